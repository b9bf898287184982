//! Virtio queue doorbells as ioeventfds: once the guest has enabled a device,
//! its notify registers are registered with the hypervisor, so a doorbell write
//! no longer stops the vCPU in the monitor; the device's own thread (see
//! `devices::spawn_device_poller`) services the queue instead. Until registration (and if it fails) doorbells still work
//! as ordinary MMIO exits.
//!
//! The guest decides how often the layout changes (every `setpci` of a command
//! register or BAR), so nothing here may grow with its writes: a doorbell whose
//! address did not change keeps its eventfd and registration, and a replaced one
//! is unregistered and closed as soon as no poll holds it any more (each bell's
//! descriptor is reference-counted, so a poll in flight never sees a recycled
//! descriptor number).

use std::sync::{Arc, Mutex};

use colinux_devices::bus::BusDevice;
use colinux_devices::pci::{NotifyRegion, PciConfigIo, PciRoot};
use colinux_driver::hypervisor::{DataMatch, IoEventAddress, Vm};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// One registered doorbell.
struct Bell {
    fd: Arc<EventFd>,
    addr: u64,
    slot: u8,
    queue: u16,
}

#[derive(Default)]
struct State {
    /// Off until a poller services the doorbells (see [`Doorbells::enable`]).
    enabled: bool,
    generation: Option<u64>,
    bells: Vec<Bell>,
}

/// The doorbells of the PCI bus, kept in step with its layout.
pub struct Doorbells {
    vm: Arc<dyn Vm>,
    pci: PciRoot,
    state: Mutex<State>,
}

impl Doorbells {
    /// Doorbells of `pci` registered with `vm`.
    pub fn new(vm: Arc<dyn Vm>, pci: Arc<Mutex<PciRoot>>) -> Self {
        let pci = pci.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Self {
            vm,
            pci,
            state: Mutex::default(),
        }
    }

    /// Turns registration on (a poller now services the doorbells) and
    /// registers what the guest has enabled so far. Until then doorbells stay
    /// MMIO exits.
    pub fn enable(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).enabled = true;
        self.refresh();
    }

    /// Re-registers the doorbells if the bus layout changed since the last call
    /// (a BAR moved, memory decoding was switched on or off).
    pub fn refresh(&self) {
        if !self.state.lock().unwrap_or_else(|e| e.into_inner()).enabled {
            return;
        }
        let (generation, regions) = (self.pci.layout_generation(), self.pci.notify_regions());
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation == Some(generation) {
            return;
        }
        st.generation = Some(generation);
        let same =
            |b: &Bell, r: &NotifyRegion| b.addr == r.addr && b.slot == r.slot && b.queue == r.queue;
        let (kept, gone): (Vec<Bell>, Vec<Bell>) = std::mem::take(&mut st.bells)
            .into_iter()
            .partition(|b| regions.iter().any(|r| same(b, r)));
        for b in gone {
            // Dropping `b` closes its descriptor once no poll holds it any more.
            if let Err(e) =
                self.vm
                    .unregister_ioevent(&b.fd, IoEventAddress::Mmio(b.addr), DataMatch::Any)
            {
                colinux_devices::guest_log!(debug, "doorbell {:#x}: {e}", b.addr);
            }
        }
        st.bells = kept;
        for r in regions {
            if st.bells.iter().any(|b| same(b, &r)) {
                continue;
            }
            let Ok(fd) = EventFd::new(EFD_NONBLOCK) else {
                continue;
            };
            match self
                .vm
                .register_ioevent(&fd, IoEventAddress::Mmio(r.addr), DataMatch::Any)
            {
                Ok(()) => st.bells.push(Bell {
                    fd: Arc::new(fd),
                    addr: r.addr,
                    slot: r.slot,
                    queue: r.queue,
                }),
                Err(e) => colinux_devices::guest_log!(
                    debug,
                    "doorbell {:#x} stays an MMIO exit: {e}",
                    r.addr
                ),
            }
        }
        colinux_devices::guest_log!(
            debug,
            generation,
            count = st.bells.len(),
            "doorbells registered"
        );
    }

    /// The descriptors to poll, with the device slot and queue each one kicks.
    /// The caller's clones keep each descriptor open while it polls.
    pub fn poll_set(&self) -> Vec<(Arc<EventFd>, u8, u16)> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.bells
            .iter()
            .map(|b| (b.fd.clone(), b.slot, b.queue))
            .collect()
    }

    /// Number of doorbells registered now.
    pub fn registered(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bells
            .len()
    }

    /// Consumes a doorbell that polled readable and services its queue. A bell
    /// replaced meanwhile still kicks its queue once: a spurious kick is harmless.
    pub fn ring(&self, fd: &EventFd, slot: u8, queue: u16) {
        if fd.read().is_ok() {
            self.pci.queue_notify(slot, queue);
        }
    }
}

/// The PCI configuration ports, refreshing the doorbells after every write (a
/// write may move a BAR or switch memory decoding).
pub struct ConfigPorts {
    inner: PciConfigIo,
    doorbells: Arc<Doorbells>,
}

impl ConfigPorts {
    /// Wraps the bus's configuration ports.
    pub fn new(inner: PciConfigIo, doorbells: Arc<Doorbells>) -> Self {
        Self { inner, doorbells }
    }
}

impl BusDevice for ConfigPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.inner.read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.inner.write(offset, data);
        if offset >= 4 {
            self.doorbells.refresh();
        }
    }
}
