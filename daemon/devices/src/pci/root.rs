//! The PCI root: bus 0 with up to 32 single-function devices, firmware-style BAR
//! placement in an MMIO window, the legacy configuration mechanism #1 on ports
//! 0xCF8..0xCFF, and MMIO dispatch to whichever BAR holds an address.
//!
//! Locking is per device: [`PciRoot`] is a cheap handle to the bus, each device
//! sits behind a lock of its own, and MMIO dispatch finds the BAR in a decode
//! snapshot (kept in step with every configuration write) without touching any
//! device. A device busy with a long request (a virtio-blk read on a slow
//! disk) so delays only the accesses aimed at itself, never the other devices,
//! the configuration space of the others, or a vCPU's exit to them.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::config::{BAR0, CMD_MEMORY, COMMAND, NUM_BARS};
use super::device::PciDevice;
use super::host_bridge::HostBridge;
use crate::bus::{BusDevice, SharedBusDevice};

/// Number of device slots on bus 0.
pub const SLOTS: usize = 32;

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

/// A device on the bus, behind its own lock.
pub type DeviceGuard<'a> = MutexGuard<'a, Box<dyn PciDevice>>;

/// What MMIO dispatch and doorbell registration need to know of a device,
/// copied out of its configuration space after every configuration write.
#[derive(Debug, Default, Clone)]
struct Decode {
    /// `(bar, base, size)` of every placed BAR, empty while memory decoding is off.
    bars: Vec<(usize, u64, u64)>,
    /// Doorbells at their current addresses (empty while decoding is off).
    notify: Vec<(u64, u32, u16)>,
}

impl Decode {
    fn of(dev: &dyn PciDevice) -> Self {
        let cfg = dev.config();
        if cfg.command() & CMD_MEMORY == 0 {
            return Decode::default();
        }
        let bars = (0..NUM_BARS)
            .filter_map(|bar| Some((bar, cfg.bar_address(bar)?, cfg.bar_info(bar)?.size)))
            .collect();
        let notify = dev
            .notify_regions()
            .into_iter()
            .filter_map(|(bar, off, len, queue)| Some((cfg.bar_address(bar)? + off, len, queue)))
            .collect();
        Decode { bars, notify }
    }
}

struct Slot {
    device: Mutex<Box<dyn PciDevice>>,
    decode: Mutex<Decode>,
}

impl Slot {
    fn device(&self) -> DeviceGuard<'_> {
        self.device.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decode(&self) -> MutexGuard<'_, Decode> {
        self.decode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Shared {
    window: MmioWindow,
    /// Filled once each, by [`PciRoot::add_device`]; never emptied.
    slots: Vec<OnceLock<Slot>>,
    /// Next free address in the window (also serializes `add_device`).
    next_free: Mutex<u64>,
    generation: AtomicU64,
}

/// Bus 0: the host bridge at 00:00.0 and the devices added after it.
///
/// A handle: clones share the bus. Every method takes `&self` and locks only
/// the device it reaches, so callers need no lock around the bus (an
/// `Arc<Mutex<PciRoot>>` still works, but holding its lock across a device
/// access would serialize the devices again; take a clone out instead).
#[derive(Clone)]
pub struct PciRoot {
    shared: Arc<Shared>,
}

impl PciRoot {
    /// A bus with the host bridge in slot 0, placing BARs inside `window`.
    pub fn new(window: MmioWindow) -> Self {
        let slots: Vec<OnceLock<Slot>> = (0..SLOTS).map(|_| OnceLock::new()).collect();
        let bridge: Box<dyn PciDevice> = Box::new(HostBridge::new());
        let _ = slots[0].set(Slot {
            decode: Mutex::new(Decode::of(&*bridge)),
            device: Mutex::new(bridge),
        });
        PciRoot {
            shared: Arc::new(Shared {
                window,
                slots,
                next_free: Mutex::new(window.base),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The window BARs are placed in.
    pub fn window(&self) -> MmioWindow {
        self.shared.window
    }

    fn slot(&self, slot: u8) -> Option<&Slot> {
        self.shared.slots.get(usize::from(slot))?.get()
    }

    /// The slot [`PciRoot::add_device`] will use next (None when the bus is
    /// full), so the caller can route the device's INTx line before adding it.
    pub fn next_slot(&self) -> Option<u8> {
        self.shared
            .slots
            .iter()
            .position(|s| s.get().is_none())
            .map(|s| s as u8)
    }

    /// Adds `device` in the next free slot, places its BARs in the window (as
    /// firmware would) and returns the slot number.
    pub fn add_device(&self, mut device: Box<dyn PciDevice>) -> Result<u8, PciError> {
        let mut next_free = self
            .shared
            .next_free
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slot = self.next_slot().ok_or(PciError::BusFull)?;
        let window = self.shared.window;
        let mut next = *next_free;
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
                (Some(a), Some(e)) if e <= window.base.saturating_add(window.size) => {
                    placed.push((bar, a));
                    next = e;
                }
                _ => {
                    return Err(PciError::WindowFull {
                        device: device.name(),
                        bar,
                        size: info.size,
                        base: window.base,
                        window: window.size,
                    })
                }
            }
        }
        for (bar, addr) in placed {
            device.config_mut().set_bar_address(bar, addr);
            tracing::debug!(device = %device.name(), slot, bar, addr = format_args!("{addr:#x}"), "BAR placed");
        }
        *next_free = next;
        let _ = self.shared.slots[slot as usize].set(Slot {
            decode: Mutex::new(Decode::of(&*device)),
            device: Mutex::new(device),
        });
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(slot)
    }

    /// The device in `slot`, locked (e.g. to reach its own API through
    /// [`PciDevice::as_any_mut`]). Other devices stay available meanwhile.
    pub fn device(&self, slot: u8) -> Option<DeviceGuard<'_>> {
        Some(self.slot(slot)?.device())
    }

    /// Counter bumped whenever a BAR or a command register may have changed; the
    /// VMM compares it to know when to re-read [`PciRoot::notify_regions`].
    pub fn layout_generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Reads configuration space of `slot`/`function` at `offset`; absent
    /// functions read as all ones.
    pub fn config_read(&self, slot: u8, function: u8, offset: usize, data: &mut [u8]) {
        match self.slot(slot) {
            Some(s) if function == 0 => s.device().config_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    /// Writes configuration space of `slot`/`function` at `offset`.
    pub fn config_write(&self, slot: u8, function: u8, offset: usize, data: &[u8]) {
        if function != 0 {
            return;
        }
        if let Some(s) = self.slot(slot) {
            let mut dev = s.device();
            dev.config_write(offset, data);
            let end = offset + data.len();
            if offset < BAR0 + 4 * NUM_BARS && end > COMMAND {
                *s.decode() = Decode::of(&**dev);
                self.shared.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The slot, BAR and offset holding the whole access `[addr, addr + len)`,
    /// from the decode snapshots (no device is locked).
    fn find_bar(&self, addr: u64, len: usize) -> Option<(&Slot, usize, u64)> {
        for s in self.shared.slots.iter().filter_map(OnceLock::get) {
            let hit = s.decode().bars.iter().find_map(|&(bar, base, size)| {
                let off = addr.wrapping_sub(base);
                (addr >= base && off < size && off + len as u64 <= size).then_some((bar, off))
            });
            if let Some((bar, off)) = hit {
                return Some((s, bar, off));
            }
        }
        None
    }

    /// Dispatches an MMIO read to the BAR holding `addr`; false (data all ones)
    /// when no enabled BAR holds the whole access.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find_bar(addr, data.len()) {
            Some((s, bar, off)) => {
                s.device().bar_read(bar, off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches an MMIO write to the BAR holding `addr`; false when none does.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find_bar(addr, data.len()) {
            Some((s, bar, off)) => {
                s.device().bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }

    /// Current queue doorbells of all devices with memory decoding enabled
    /// (from the decode snapshots: no device is locked).
    pub fn notify_regions(&self) -> Vec<NotifyRegion> {
        let mut out = Vec::new();
        for (slot, s) in self.shared.slots.iter().enumerate() {
            let Some(s) = s.get() else { continue };
            for &(addr, len, queue) in &s.decode().notify {
                out.push(NotifyRegion {
                    addr,
                    len,
                    slot: slot as u8,
                    queue,
                });
            }
        }
        out
    }

    /// Slots holding a device with queues (what a device thread serves).
    pub fn queue_slots(&self) -> Vec<u8> {
        (0..SLOTS as u8)
            .filter(|&i| {
                self.slot(i)
                    .is_some_and(|s| !s.device().notify_regions().is_empty())
            })
            .collect()
    }

    /// Kicks `queue` of the device in `slot` (an ioeventfd fired).
    pub fn queue_notify(&self, slot: u8, queue: u16) {
        if let Some(s) = self.slot(slot) {
            s.device().queue_notify(queue);
        }
    }

    /// The host descriptor of the device in `slot`, if it has work to poll for.
    pub fn backend_fd(&self, slot: u8) -> Option<RawFd> {
        self.slot(slot)?.device().backend_fd()
    }

    /// Host descriptors to poll, with the slot to pass to [`PciRoot::process_backend`].
    pub fn backend_fds(&self) -> Vec<(u8, RawFd)> {
        (0..SLOTS as u8)
            .filter_map(|i| Some((i, self.backend_fd(i)?)))
            .collect()
    }

    /// Adds the host descriptors the backend of the device in `slot` serves
    /// on the caller's thread (see [`PciDevice::poll_fds`]); returns how many.
    pub fn poll_fds(&self, slot: u8, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) -> usize {
        let before = fds.len();
        if let Some(s) = self.slot(slot) {
            s.device().poll_fds(fds, timeout_ms);
        }
        fds.len() - before
    }

    /// Hands the device in `slot` the poll's results for what
    /// [`PciRoot::poll_fds`] added.
    pub fn poll_done(&self, slot: u8, fds: &[libc::pollfd]) {
        if let Some(s) = self.slot(slot) {
            s.device().poll_done(fds);
        }
    }

    /// Lets the device in `slot` service its backend (its fd polled readable).
    pub fn process_backend(&self, slot: u8) {
        if let Some(s) = self.slot(slot) {
            s.device().process_backend();
        }
    }
}

/// A handle to the bus behind `root` (whose lock is held only for the clone).
fn handle(root: &Mutex<PciRoot>) -> PciRoot {
    root.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Configuration mechanism #1: the address register at 0xCF8 and the data window
/// 0xCFC..0xCFF. Insert it on the port I/O bus at 0xCF8 with length 8.
pub struct PciConfigIo {
    root: PciRoot,
    address: u32,
}

impl PciConfigIo {
    /// The config ports of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciConfigIo {
            root: handle(&root),
            address: 0,
        }
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
                self.root.config_read(slot, f, reg, data)
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
                self.root.config_write(slot, f, reg, data);
            }
        }
    }
}

/// The whole MMIO window as one bus device: insert it on the MMIO bus at
/// `window.base` with length `window.size`; it forwards to [`PciRoot::mmio_read`]
/// and [`PciRoot::mmio_write`], so BARs the guest moves need no bus changes.
/// Insert it with [`Bus::insert_shared`](crate::bus::Bus::insert_shared): it
/// needs no lock of its own, so an access waits only for the device it hits.
pub struct PciMmio {
    root: PciRoot,
    base: u64,
}

impl PciMmio {
    /// The MMIO window of `root`.
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        let root = handle(&root);
        let base = root.window().base;
        PciMmio { root, base }
    }

    /// Another window of `root` starting at `base` (e.g. the 64-bit window the
    /// ACPI tables advertise): BARs the guest moves there decode the same way.
    pub fn at(root: Arc<Mutex<PciRoot>>, base: u64) -> Self {
        PciMmio {
            root: handle(&root),
            base,
        }
    }
}

impl SharedBusDevice for PciMmio {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.root.mmio_read(self.base.wrapping_add(offset), data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.root.mmio_write(self.base.wrapping_add(offset), data);
    }
}

impl BusDevice for PciMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        SharedBusDevice::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        SharedBusDevice::write(self, offset, data);
    }
}
