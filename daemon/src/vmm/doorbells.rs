//! Virtio queue doorbells as ioeventfds: once the guest has enabled a device,
//! its notify registers are registered with the hypervisor, so a doorbell write
//! no longer stops the vCPU in the monitor; the backend poller thread services
//! the queue instead. Until registration (and if it fails) doorbells still work
//! as ordinary MMIO exits.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use colinux_devices::bus::BusDevice;
use colinux_devices::pci::{PciConfigIo, PciRoot};
use colinux_driver::hypervisor::{DataMatch, IoEventAddress, Vm};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// One registered doorbell.
struct Bell {
    fd: EventFd,
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
    /// Descriptors of replaced registrations, kept open so a poll in flight on
    /// another thread never sees a recycled descriptor number.
    retired: Vec<EventFd>,
}

/// The doorbells of the PCI bus, kept in step with its layout.
pub struct Doorbells {
    vm: Arc<dyn Vm>,
    pci: Arc<Mutex<PciRoot>>,
    state: Mutex<State>,
}

impl Doorbells {
    /// Doorbells of `pci` registered with `vm`.
    pub fn new(vm: Arc<dyn Vm>, pci: Arc<Mutex<PciRoot>>) -> Self {
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
        let (generation, regions) = {
            let pci = self.pci.lock().unwrap_or_else(|e| e.into_inner());
            (pci.layout_generation(), pci.notify_regions())
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation == Some(generation) {
            return;
        }
        st.generation = Some(generation);
        for b in std::mem::take(&mut st.bells) {
            if let Err(e) =
                self.vm
                    .unregister_ioevent(&b.fd, IoEventAddress::Mmio(b.addr), DataMatch::Any)
            {
                tracing::debug!("doorbell {:#x}: {e}", b.addr);
            }
            st.retired.push(b.fd);
        }
        for r in regions {
            let Ok(fd) = EventFd::new(EFD_NONBLOCK) else {
                continue;
            };
            match self
                .vm
                .register_ioevent(&fd, IoEventAddress::Mmio(r.addr), DataMatch::Any)
            {
                Ok(()) => st.bells.push(Bell {
                    fd,
                    addr: r.addr,
                    slot: r.slot,
                    queue: r.queue,
                }),
                Err(e) => tracing::debug!("doorbell {:#x} stays an MMIO exit: {e}", r.addr),
            }
        }
        tracing::debug!(generation, count = st.bells.len(), "doorbells registered");
    }

    /// The descriptors to poll, with the device slot and queue each one kicks.
    pub fn poll_set(&self) -> Vec<(RawFd, u8, u16)> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.bells
            .iter()
            .map(|b| (b.fd.as_raw_fd(), b.slot, b.queue))
            .collect()
    }

    /// Consumes a doorbell that polled readable and services its queue.
    pub fn ring(&self, fd: RawFd, slot: u8, queue: u16) {
        let fired = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.bells
                .iter()
                .find(|b| b.fd.as_raw_fd() == fd)
                .is_some_and(|b| b.fd.read().is_ok())
        };
        if fired {
            self.pci
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue_notify(slot, queue);
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
