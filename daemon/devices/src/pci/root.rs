//! The PCI root: bus 0 with up to 32 single-function devices, firmware-style BAR
//! placement in an MMIO window, the legacy configuration mechanism #1 on ports
//! 0xCF8..0xCFF, and MMIO dispatch to whichever BAR holds an address.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::{PciConfig, BAR0, CMD_MEMORY, COMMAND, NUM_BARS};
use super::host_bridge::HostBridge;
use crate::bus::BusDevice;

/// Number of device slots on bus 0.
pub const SLOTS: usize = 32;

/// A function on the PCI bus, as the root sees it.
pub trait PciDevice: Send {
    /// Short name for logs (e.g. `virtio-blk cobd0`).
    fn name(&self) -> String;
    /// The configuration space (identity, BARs, command register).
    fn config(&self) -> &PciConfig;
    /// Mutable configuration space, used by the root to place BARs at start.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// A guest read of configuration space.
    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }
    /// A guest write of configuration space (devices hook capabilities here).
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }
    /// A guest read at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// A guest write at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
    /// Doorbells the VMM may turn into ioeventfds: `(bar, offset, len, queue)`.
    fn notify_regions(&self) -> Vec<(usize, u64, u32, u16)> {
        Vec::new()
    }
    /// Services a doorbell for `queue` that arrived outside MMIO (an ioeventfd).
    fn queue_notify(&mut self, _queue: u16) {}
    /// A host descriptor whose readability means the device has work (net rx).
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// Does the work signalled by [`PciDevice::backend_fd`].
    fn process_backend(&mut self) {}
    /// The concrete device, for callers that need its own API (e.g. changing
    /// a NIC's link state): `dev.as_any_mut()?.downcast_mut::<T>()`.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}

/// The guest-physical window where BARs are placed and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    /// First address of the window.
    pub base: u64,
    /// Size of the window in bytes.
    pub size: u64,
}

/// Errors assembling the PCI bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// All 32 slots of bus 0 are used.
    #[error("PCI bus 0 is full (32 slots)")]
    BusFull,
    /// A BAR does not fit in the remaining MMIO window.
    #[error("BAR {bar} ({size:#x} bytes) of {device} does not fit in the PCI MMIO window {base:#x}+{window:#x}")]
    WindowFull {
        /// Device name.
        device: String,
        /// BAR slot.
        bar: usize,
        /// BAR size.
        size: u64,
        /// Window base.
        base: u64,
        /// Window size.
        window: u64,
    },
}

/// A queue doorbell at a guest-physical address, for `KVM_IOEVENTFD` registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyRegion {
    /// Guest-physical address of the doorbell.
    pub addr: u64,
    /// Width of the doorbell register in bytes.
    pub len: u32,
    /// Slot of the device on bus 0.
    pub slot: u8,
    /// Queue index the doorbell kicks.
    pub queue: u16,
}

/// Bus 0: the host bridge at 00:00.0 and the devices added after it.
pub struct PciRoot {
    window: MmioWindow,
    next_free: u64,
    slots: Vec<Option<Box<dyn PciDevice>>>,
    generation: u64,
}

impl PciRoot {
    /// A bus with the host bridge in slot 0, placing BARs inside `window`.
    pub fn new(window: MmioWindow) -> Self {
        let mut slots: Vec<Option<Box<dyn PciDevice>>> = (0..SLOTS).map(|_| None).collect();
        slots[0] = Some(Box::new(HostBridge::new()));
        PciRoot {
            window,
            next_free: window.base,
            slots,
            generation: 0,
        }
    }

    /// The slot [`PciRoot::add_device`] will use next (None when the bus is
    /// full), so the caller can route the device's INTx line before adding it.
    pub fn next_slot(&self) -> Option<u8> {
        self.slots.iter().position(Option::is_none).map(|s| s as u8)
    }

    /// Adds `device` in the next free slot, places its BARs in the window (as
    /// firmware would) and returns the slot number.
    pub fn add_device(&mut self, mut device: Box<dyn PciDevice>) -> Result<u8, PciError> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciError::BusFull)?;
        let mut next = self.next_free;
        let mut placed = Vec::new();
        for bar in 0..NUM_BARS {
            let Some(info) = device.config().bar_info(bar) else {
                continue;
            };
            let addr = next
                .checked_add(info.size - 1)
                .map(|a| a & !(info.size - 1));
            let end = addr.and_then(|a| a.checked_add(info.size));
            match (addr, end) {
                (Some(a), Some(e)) if e <= self.window.base.saturating_add(self.window.size) => {
                    placed.push((bar, a));
                    next = e;
                }
                _ => {
                    return Err(PciError::WindowFull {
                        device: device.name(),
                        bar,
                        size: info.size,
                        base: self.window.base,
                        window: self.window.size,
                    })
                }
            }
        }
        for (bar, addr) in placed {
            device.config_mut().set_bar_address(bar, addr);
            tracing::debug!(device = %device.name(), slot, bar, addr = format_args!("{addr:#x}"), "BAR placed");
        }
        self.next_free = next;
        self.slots[slot] = Some(device);
        self.generation += 1;
        Ok(slot as u8)
    }

    /// The device in `slot`, if any.
    pub fn device_mut(&mut self, slot: u8) -> Option<&mut (dyn PciDevice + 'static)> {
        self.slots.get_mut(usize::from(slot))?.as_deref_mut()
    }

    /// Counter bumped whenever a BAR or a command register may have changed; the
    /// VMM compares it to know when to re-read [`PciRoot::notify_regions`].
    pub fn layout_generation(&self) -> u64 {
        self.generation
    }

    /// Reads configuration space of `slot`/`function` at `offset`; absent
    /// functions read as all ones.
    pub fn config_read(&mut self, slot: u8, function: u8, offset: usize, data: &mut [u8]) {
        match self
            .slots
            .get_mut(usize::from(slot))
            .and_then(|s| s.as_deref_mut())
        {
            Some(dev) if function == 0 => dev.config_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    /// Writes configuration space of `slot`/`function` at `offset`.
    pub fn config_write(&mut self, slot: u8, function: u8, offset: usize, data: &[u8]) {
        if function != 0 {
            return;
        }
        if let Some(dev) = self
            .slots
            .get_mut(usize::from(slot))
            .and_then(|s| s.as_deref_mut())
        {
            dev.config_write(offset, data);
            let end = offset + data.len();
            if offset < BAR0 + 4 * NUM_BARS && end > COMMAND {
                self.generation += 1;
            }
        }
    }

    fn find_bar(&mut self, addr: u64, len: usize) -> Option<(&mut Box<dyn PciDevice>, usize, u64)> {
        for dev in self.slots.iter_mut().flatten() {
            if dev.config().command() & CMD_MEMORY == 0 {
                continue;
            }
            for bar in 0..NUM_BARS {
                let (Some(info), Some(base)) =
                    (dev.config().bar_info(bar), dev.config().bar_address(bar))
                else {
                    continue;
                };
                let off = addr.wrapping_sub(base);
                if addr >= base && off < info.size && off + len as u64 <= info.size {
                    return Some((dev, bar, off));
                }
            }
        }
        None
    }

    /// Dispatches an MMIO read to the BAR holding `addr`; false (data all ones)
    /// when no enabled BAR holds the whole access.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.find_bar(addr, data.len()) {
            Some((dev, bar, off)) => {
                dev.bar_read(bar, off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches an MMIO write to the BAR holding `addr`; false when none does.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.find_bar(addr, data.len()) {
            Some((dev, bar, off)) => {
                dev.bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }

    /// Current queue doorbells of all devices with memory decoding enabled.
    pub fn notify_regions(&self) -> Vec<NotifyRegion> {
        let mut out = Vec::new();
        for (slot, dev) in self.slots.iter().enumerate() {
            let Some(dev) = dev else { continue };
            if dev.config().command() & CMD_MEMORY == 0 {
                continue;
            }
            for (bar, off, len, queue) in dev.notify_regions() {
                if let Some(base) = dev.config().bar_address(bar) {
                    out.push(NotifyRegion {
                        addr: base + off,
                        len,
                        slot: slot as u8,
                        queue,
                    });
                }
            }
        }
        out
    }

    /// Kicks `queue` of the device in `slot` (an ioeventfd fired).
    pub fn queue_notify(&mut self, slot: u8, queue: u16) {
        if let Some(dev) = self.device_mut(slot) {
            dev.queue_notify(queue);
        }
    }

    /// Host descriptors to poll, with the slot to pass to [`PciRoot::process_backend`].
    pub fn backend_fds(&self) -> Vec<(u8, RawFd)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i as u8, d.as_ref()?.backend_fd()?)))
            .collect()
    }

    /// Lets the device in `slot` service its backend (its fd polled readable).
    pub fn process_backend(&mut self, slot: u8) {
        if let Some(dev) = self.device_mut(slot) {
            dev.process_backend();
        }
    }
}

/// Locks the shared root, recovering from poisoning (a panicked device access
/// must not take down the VM on the next exit).
fn lock(root: &Mutex<PciRoot>) -> MutexGuard<'_, PciRoot> {
    root.lock().unwrap_or_else(|e| e.into_inner())
}

/// Configuration mechanism #1: the address register at 0xCF8 and the data window
/// 0xCFC..0xCFF. Insert it on the port I/O bus at 0xCF8 with length 8.
pub struct PciConfigIo {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
}

impl PciConfigIo {
    /// The config ports of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciConfigIo { root, address: 0 }
    }

    fn target(&self, data_offset: u64) -> Option<(u8, u8, usize)> {
        let a = self.address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let slot = ((a >> 11) & 0x1f) as u8;
        let function = ((a >> 8) & 7) as u8;
        let reg = (a & 0xfc) as usize + data_offset as usize;
        Some((slot, function, reg))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset < 4 {
            let bytes = self.address.to_le_bytes();
            for (i, b) in data.iter_mut().enumerate() {
                *b = bytes.get(offset as usize + i).copied().unwrap_or(0xff);
            }
            return;
        }
        match self.target(offset - 4) {
            Some((slot, f, reg)) if reg + data.len() <= 256 => {
                lock(&self.root).config_read(slot, f, reg, data)
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < 4 {
            let mut bytes = self.address.to_le_bytes();
            for (i, &b) in data.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(offset as usize + i) {
                    *slot = b;
                }
            }
            self.address = u32::from_le_bytes(bytes);
            return;
        }
        if let Some((slot, f, reg)) = self.target(offset - 4) {
            if reg + data.len() <= 256 {
                lock(&self.root).config_write(slot, f, reg, data);
            }
        }
    }
}

/// The whole MMIO window as one bus device: insert it on the MMIO bus at
/// `window.base` with length `window.size`; it forwards to [`PciRoot::mmio_read`]
/// and [`PciRoot::mmio_write`], so BARs the guest moves need no bus changes.
pub struct PciMmio {
    root: Arc<Mutex<PciRoot>>,
    base: u64,
}

impl PciMmio {
    /// The MMIO window of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        let base = lock(&root).window.base;
        PciMmio { root, base }
    }

    /// Another window of `root` starting at `base` (e.g. the 64-bit window the
    /// ACPI tables advertise): BARs the guest moves there decode the same way.
    pub fn at(root: Arc<Mutex<PciRoot>>, base: u64) -> Self {
        PciMmio { root, base }
    }
}

impl BusDevice for PciMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.root).mmio_read(self.base.wrapping_add(offset), data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.root).mmio_write(self.base.wrapping_add(offset), data);
    }
}
