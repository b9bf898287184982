//! The virtio 1.x PCI transport ("modern" virtio-pci, device IDs 0x1040 + type).
//!
//! One 64-bit memory BAR (BAR 0, 32 KiB) holds every structure:
//!
//! | offset   | structure                                  |
//! |----------|--------------------------------------------|
//! | `0x0000` | common configuration (`virtio_pci_common_cfg`) |
//! | `0x1000` | ISR status (read clears)                   |
//! | `0x2000` | device-specific configuration              |
//! | `0x3000` | queue doorbells, 4 bytes per queue (`notify_off_multiplier` 4, `queue_notify_off` = index) |
//! | `0x4000` | MSI-X table (one vector per queue + one for config changes) |
//! | `0x6000` | MSI-X pending bit array                    |
//!
//! Configuration space carries the MSI-X capability and the five virtio vendor
//! capabilities (common, notify, ISR, device, PCI-cfg access window).
//! Without MSI-X enabled the device falls back to INTx: the ISR bit is set and
//! the configured legacy line is raised until the guest reads the ISR.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

use super::{Completions, VirtioDevice, F_RING_EVENT_IDX, F_VERSION_1};
use crate::interrupt::InterruptSink;
use crate::pci::config::{PciConfig, PciIds, CMD_INTX_DISABLE, STATUS, STATUS_INTERRUPT};
use crate::pci::msix::{Msix, CAP_ID_MSIX, NO_VECTOR};
use crate::pci::PciDevice;

mod common_cfg;

/// Virtio's PCI vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Size of BAR 0.
pub const BAR_SIZE: u64 = 0x8000;
/// Offset of the common configuration structure in BAR 0.
pub const COMMON_OFFSET: u64 = 0x0000;
/// Offset of the ISR byte in BAR 0.
pub const ISR_OFFSET: u64 = 0x1000;
/// Offset of the device configuration in BAR 0.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Offset of the doorbells in BAR 0.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Bytes between two queues' doorbells.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// Offset of the MSI-X table in BAR 0.
pub const MSIX_TABLE_OFFSET: u64 = 0x4000;
/// Offset of the MSI-X PBA in BAR 0.
pub const MSIX_PBA_OFFSET: u64 = 0x6000;
const REGION_LEN: u32 = 0x1000;

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    use virtio_bindings::virtio_config as vc;

    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = vc::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = vc::VIRTIO_CONFIG_S_DRIVER as u8;
    /// The driver is ready to drive the device.
    pub const DRIVER_OK: u8 = vc::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = vc::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    /// The device hit an error and needs a reset.
    pub const NEEDS_RESET: u8 = vc::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
    /// The guest gave up on the device.
    pub const FAILED: u8 = vc::VIRTIO_CONFIG_S_FAILED as u8;
}

/// ISR bit: a queue has used buffers.
const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration changed.
const ISR_CONFIG: u8 = 2;

const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;
const CFG_PCI: u8 = 5;
const CAP_ID_VENDOR: u8 = 0x09;

/// Whether the rings of `q` lie in guest RAM (what `Queue::is_valid` checks,
/// without its unlimited error-level log line).
fn rings_in_memory(q: &Queue, mem: &GuestMemoryMmap) -> bool {
    let n = u64::from(q.size());
    let inside = |base: u64, len: u64| {
        base.checked_add(len)
            .is_some_and(|end| mem.address_in_range(GuestAddress(end)))
    };
    inside(q.desc_table(), 16 * n)
        && inside(q.avail_ring(), 6 + 2 * n)
        && inside(q.used_ring(), 6 + 8 * n)
}

/// A virtio device on PCI.
pub struct VirtioPciDevice<D: VirtioDevice> {
    device: D,
    config: PciConfig,
    msix: Msix,
    msix_cap: usize,
    pci_cfg_cap: usize,
    mem: GuestMemoryMmap,
    sink: Arc<dyn InterruptSink>,
    intx_irq: Option<u32>,
    intx_level: bool,
    queues: Vec<Queue>,
    queue_vectors: Vec<u16>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    config_vector: u16,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    isr: u8,
}

impl<D: VirtioDevice> VirtioPciDevice<D> {
    /// Wraps `device`. `mem` is the guest RAM its queues live in, `sink` delivers
    /// MSI-X messages, `intx_irq` is the legacy line used while MSI-X is off.
    pub fn new(
        device: D,
        mem: GuestMemoryMmap,
        sink: Arc<dyn InterruptSink>,
        intx_irq: Option<u32>,
    ) -> Self {
        let sizes = device.queue_max_sizes();
        let queues: Vec<Queue> = sizes
            .iter()
            .map(|&s| {
                Queue::new(s)
                    .unwrap_or_else(|_| Queue::new(256).expect("256 is a valid queue size"))
            })
            .collect();
        let nq = queues.len();
        let ids = PciIds {
            vendor: VIRTIO_VENDOR,
            device: 0x1040 + device.device_type(),
            revision: 1,
            class: device.pci_class(),
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: 0x40,
        };
        let mut config = PciConfig::new(ids, 1);
        if let Some(irq) = intx_irq {
            config.set_raw(crate::pci::config::INTERRUPT_LINE, &[irq as u8]);
        }
        config
            .add_mem_bar(0, BAR_SIZE, true)
            .expect("BAR 0 layout is static");
        let msix = Msix::new(nq as u16 + 1);
        let (body, mask) = msix.capability(0, MSIX_TABLE_OFFSET as u32, MSIX_PBA_OFFSET as u32);
        let msix_cap = config
            .add_capability(CAP_ID_MSIX, &body, Some(&mask))
            .expect("capability space");
        let vendor_cap = |config: &mut PciConfig,
                          kind: u8,
                          offset: u64,
                          len: u32,
                          extra: &[u8],
                          wmask: Option<&[u8]>| {
            let cap_len = 16 + extra.len() as u8;
            let mut body = vec![cap_len, kind, 0, 0, 0, 0];
            body.extend_from_slice(&(offset as u32).to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(extra);
            config
                .add_capability(CAP_ID_VENDOR, &body, wmask)
                .expect("capability space")
        };
        vendor_cap(
            &mut config,
            CFG_COMMON,
            COMMON_OFFSET,
            REGION_LEN,
            &[],
            None,
        );
        vendor_cap(
            &mut config,
            CFG_NOTIFY,
            NOTIFY_OFFSET,
            REGION_LEN,
            &NOTIFY_MULTIPLIER.to_le_bytes(),
            None,
        );
        vendor_cap(&mut config, CFG_ISR, ISR_OFFSET, REGION_LEN, &[], None);
        vendor_cap(
            &mut config,
            CFG_DEVICE,
            DEVICE_OFFSET,
            REGION_LEN,
            &[],
            None,
        );
        // PCI-cfg access window: bar, offset, length and data are driver-writable.
        let mut wmask = vec![0u8; 18];
        wmask[2] = 0xff; // bar
        wmask[6..18].fill(0xff); // offset, length, data
        let pci_cfg_cap = vendor_cap(&mut config, CFG_PCI, 0, 0, &[0; 4], Some(&wmask));
        VirtioPciDevice {
            device,
            config,
            msix,
            msix_cap,
            pci_cfg_cap,
            mem,
            sink,
            intx_irq,
            intx_level: false,
            queues,
            queue_vectors: vec![NO_VECTOR; nq],
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            config_vector: NO_VECTOR,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            isr: 0,
        }
    }

    /// The wrapped device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The wrapped device model, mutably (e.g. to change the net link state).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The device status byte as the driver last set it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | F_VERSION_1
    }

    fn active(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    /// Tells the guest the device configuration changed (bumps the generation
    /// and sends the config vector).
    pub fn signal_config_change(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.signal(self.config_vector, ISR_CONFIG);
        }
    }

    fn signal(&mut self, vector: u16, isr_bit: u8) {
        if self.msix.enabled() {
            // Virtio 4.1.4.5.1: the config-change bit is set in the ISR even
            // with MSI-X; the queue bit only without it.
            self.isr |= isr_bit & ISR_CONFIG;
            if vector != NO_VECTOR {
                self.msix.notify(vector, &*self.sink);
            }
            return;
        }
        self.isr |= isr_bit;
        self.update_intx();
    }

    /// Recomputes INTx#: the PCI status register's Interrupt Status bit is the
    /// OR of the ISR while MSI-X is off (virtio 4.1.4.5.1), and the line is
    /// driven from it unless the command register's Interrupt Disable bit is set.
    fn update_intx(&mut self) {
        let pending = self.isr != 0 && !self.msix.enabled();
        let st = self.config.read_u16(STATUS);
        let st = if pending {
            st | STATUS_INTERRUPT
        } else {
            st & !STATUS_INTERRUPT
        };
        self.config.set_raw(STATUS, &st.to_le_bytes());
        let Some(irq) = self.intx_irq else { return };
        let level = pending && self.config.command() & CMD_INTX_DISABLE == 0;
        if level != self.intx_level {
            self.intx_level = level;
            if let Err(e) = self.sink.set_irq_line(irq, level) {
                crate::guest_log!(warn, device = %self.device.name(), irq, error = %e, "INTx delivery failed");
            }
        }
    }

    fn signal_completions(&mut self, done: Completions) {
        for i in 0..self.queues.len() {
            if !done.has(i) {
                continue;
            }
            let q = &mut self.queues[i];
            let mut notify = q.needs_notification(&self.mem).unwrap_or(true);
            if notify && !q.event_idx_enabled() {
                // Without EVENT_IDX the driver asks for silence with
                // VRING_AVAIL_F_NO_INTERRUPT in the avail ring's flags.
                let flags: u16 = self.mem.read_obj(GuestAddress(q.avail_ring())).unwrap_or(0);
                let no_interrupt = virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT as u16;
                notify = u16::from_le(flags) & no_interrupt == 0;
            }
            if notify {
                self.signal(self.queue_vectors[i], ISR_QUEUE);
            }
        }
    }

    /// Handles a doorbell for `queue` (MMIO write or ioeventfd).
    pub fn kick(&mut self, queue: usize) {
        if !self.active() || !self.queues.get(queue).is_some_and(|q| q.ready()) {
            return;
        }
        let done = self
            .device
            .process_queue(queue, &mut self.queues, &self.mem);
        self.signal_completions(done);
    }

    /// Lets the device service its backend (e.g. frames waiting for the guest).
    pub fn service_backend(&mut self) {
        let active = self.active();
        let done = self
            .device
            .process_backend(&mut self.queues, &self.mem, active);
        self.signal_completions(done);
    }

    fn reset(&mut self) {
        crate::guest_log!(debug, device = %self.device.name(), "virtio reset");
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_vectors.fill(NO_VECTOR);
        self.config_vector = NO_VECTOR;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.isr = 0;
        self.update_intx();
        self.device.reset();
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // Only a reset takes FEATURES_OK and DRIVER_OK back (a driver never
        // clears a status bit, virtio 2.1.2): otherwise a live device could
        // drop FEATURES_OK, take unchecked driver features and keep running.
        let sticky = status::NEEDS_RESET | status::FEATURES_OK | status::DRIVER_OK;
        let mut new = value | (old & sticky);
        if new & status::FEATURES_OK != 0 && old & status::FEATURES_OK == 0 {
            let offered = self.offered_features();
            let ok =
                self.driver_features & !offered == 0 && self.driver_features & F_VERSION_1 != 0;
            if !ok {
                crate::guest_log!(warn, device = %self.device.name(), features = format_args!("{:#x}", self.driver_features), "driver features refused");
                new &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            if new & status::FEATURES_OK == 0 {
                new &= !status::DRIVER_OK;
            } else {
                self.status = new;
                self.activate();
                return;
            }
        }
        self.status = new;
    }

    fn activate(&mut self) {
        let event_idx = self.driver_features & F_RING_EVENT_IDX != 0;
        let mut valid = true;
        for (i, q) in self.queues.iter_mut().enumerate() {
            q.set_event_idx(event_idx);
            if q.ready() && !rings_in_memory(q, &self.mem) {
                crate::guest_log!(warn, device = %self.device.name(), queue = i, "queue rings outside guest memory");
                valid = false;
            }
        }
        if !valid {
            self.status |= status::NEEDS_RESET;
            self.signal_config_change();
            return;
        }
        crate::guest_log!(debug, device = %self.device.name(), features = format_args!("{:#x}", self.driver_features), "virtio activated");
        self.device.activate(self.driver_features);
    }

    fn read_isr(&mut self, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.isr;
        }
        self.isr = 0;
        self.update_intx();
    }

    /// Reads BAR 0 at `offset`.
    pub fn read_bar0(&mut self, offset: u64, data: &mut [u8]) {
        let len = data.len() as u64;
        let within = |base: u64, size: u64| offset >= base && offset - base + len <= size;
        if within(COMMON_OFFSET, 64) {
            let s = self.common_snapshot();
            let o = (offset - COMMON_OFFSET) as usize;
            data.copy_from_slice(&s[o..o + data.len()]);
        } else if within(ISR_OFFSET, u64::from(REGION_LEN)) {
            self.read_isr(data);
        } else if within(DEVICE_OFFSET, u64::from(REGION_LEN)) {
            self.device.read_config(offset - DEVICE_OFFSET, data);
        } else if within(MSIX_TABLE_OFFSET, self.msix.table_len() as u64) {
            self.msix.table_read(offset - MSIX_TABLE_OFFSET, data);
        } else if within(MSIX_PBA_OFFSET, self.msix.pba_len() as u64) {
            self.msix.pba_read(offset - MSIX_PBA_OFFSET, data);
        } else {
            data.fill(0);
        }
    }

    /// Writes BAR 0 at `offset`.
    pub fn write_bar0(&mut self, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        let within = |base: u64, size: u64| offset >= base && offset - base + len <= size;
        if within(COMMON_OFFSET, 64) {
            self.common_write(offset - COMMON_OFFSET, data);
        } else if within(DEVICE_OFFSET, u64::from(REGION_LEN)) {
            self.device.write_config(offset - DEVICE_OFFSET, data);
        } else if within(NOTIFY_OFFSET, u64::from(REGION_LEN)) {
            self.kick(((offset - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize);
        } else if within(MSIX_TABLE_OFFSET, self.msix.table_len() as u64) {
            self.msix
                .table_write(offset - MSIX_TABLE_OFFSET, data, &*self.sink);
        } else {
            crate::guest_log!(debug, device = %self.device.name(), offset, "ignored BAR 0 write");
        }
    }

    fn overlaps(offset: usize, len: usize, start: usize, field_len: usize) -> bool {
        offset < start + field_len && start < offset + len
    }

    /// The PCI-cfg window's current target: BAR offset and length, if usable.
    fn pci_cfg_target(&self) -> Option<(u64, usize)> {
        let c = self.pci_cfg_cap;
        let mut bar = [0u8; 1];
        self.config.read(c + 4, &mut bar);
        let off = self.config.read_u32(c + 8);
        let len = self.config.read_u32(c + 12) as usize;
        (bar[0] == 0 && matches!(len, 1 | 2 | 4) && u64::from(off) + len as u64 <= BAR_SIZE)
            .then_some((u64::from(off), len))
    }
}

impl<D: VirtioDevice + 'static> PciDevice for VirtioPciDevice<D> {
    fn name(&self) -> String {
        self.device.name()
    }
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize, data: &mut [u8]) {
        if Self::overlaps(offset, data.len(), self.pci_cfg_cap + 16, 4) {
            if let Some((off, len)) = self.pci_cfg_target() {
                let mut buf = [0u8; 4];
                self.read_bar0(off, &mut buf[..len]);
                self.config.set_raw(self.pci_cfg_cap + 16, &buf);
            }
        }
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        let len = data.len();
        if Self::overlaps(offset, len, self.msix_cap + 2, 2) {
            let control = self.config.read_u16(self.msix_cap + 2);
            self.msix.set_control(control, &*self.sink);
            self.update_intx();
        }
        if Self::overlaps(offset, len, crate::pci::config::COMMAND, 2) {
            self.update_intx();
        }
        if Self::overlaps(offset, len, self.pci_cfg_cap + 16, 4) {
            if let Some((off, n)) = self.pci_cfg_target() {
                let mut buf = [0u8; 4];
                self.config.read(self.pci_cfg_cap + 16, &mut buf);
                self.write_bar0(off, &buf[..n]);
            }
        }
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == 0 {
            self.read_bar0(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == 0 {
            self.write_bar0(offset, data);
        }
    }

    fn notify_regions(&self) -> Vec<(usize, u64, u32, u16)> {
        (0..self.queues.len() as u16)
            .map(|q| {
                (
                    0,
                    NOTIFY_OFFSET + u64::from(q) * u64::from(NOTIFY_MULTIPLIER),
                    2,
                    q,
                )
            })
            .collect()
    }

    fn queue_notify(&mut self, queue: u16) {
        self.kick(usize::from(queue));
    }

    fn backend_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.backend_fd()
    }

    fn process_backend(&mut self) {
        self.service_backend();
    }

    fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) {
        self.device.poll_fds(fds, timeout_ms);
    }

    fn poll_done(&mut self, fds: &[libc::pollfd]) {
        self.device.poll_done(fds);
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}
