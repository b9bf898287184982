//! Virtio 1.x devices over the modern PCI transport.
//!
//! A [`VirtioDevice`] (block in [`blk`], network in [`net`]) knows only its
//! queues and its configuration structure. [`pci::VirtioPciDevice`] wraps one
//! into a PCI function: it owns feature negotiation, device status, queue setup,
//! the common/notify/ISR/device/PCI-cfg capabilities and MSI-X, and decides when
//! to interrupt the guest (once per batch of completions per queue, respecting
//! `VIRTIO_F_EVENT_IDX`). Every chain a device touches goes through
//! [`chain::parse`] first, so a hostile guest gets a dropped request or an error
//! status, never a panic, a hang or an access outside its RAM.

pub mod blk;
pub mod chain;
pub mod fs;
pub mod net;
pub mod pci;

use std::os::fd::RawFd;

use chain::Chain;
use virtio_bindings::{virtio_config, virtio_ids, virtio_ring};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

/// The feature mask of feature bit number `bit` (as `virtio-bindings` numbers
/// them, e.g. `VIRTIO_F_VERSION_1` is 32).
pub const fn feature(bit: u32) -> u64 {
    1 << bit
}

/// Feature bit: the device follows virtio 1.x (always offered by the transport).
pub const F_VERSION_1: u64 = feature(virtio_config::VIRTIO_F_VERSION_1);
/// Feature bit: indirect descriptor tables.
pub const F_RING_INDIRECT_DESC: u64 = feature(virtio_ring::VIRTIO_RING_F_INDIRECT_DESC);
/// Feature bit: `used_event`/`avail_event` interrupt suppression.
pub const F_RING_EVENT_IDX: u64 = feature(virtio_ring::VIRTIO_RING_F_EVENT_IDX);

/// Virtio device type of a network card.
pub const TYPE_NET: u16 = virtio_ids::VIRTIO_ID_NET as u16;
/// Virtio device type of a block device.
pub const TYPE_BLOCK: u16 = virtio_ids::VIRTIO_ID_BLOCK as u16;
/// Virtio device type of a file system (virtio-fs).
pub const TYPE_FS: u16 = virtio_ids::VIRTIO_ID_FS as u16;

/// What a device's queue handling produced: which queues got used entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Completions(pub u64);

impl Completions {
    /// Marks queue `index` as having new used entries.
    pub fn add(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    /// Whether queue `index` has new used entries.
    pub fn has(&self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }

    /// Serves queue `index` of `queues` with `serve` (which says whether it
    /// used a buffer): that queue marked if so; nothing for an index out of
    /// range.
    pub fn of_queue(
        queues: &mut [Queue],
        index: usize,
        serve: impl FnOnce(&mut Queue) -> bool,
    ) -> Self {
        let mut done = Completions::default();
        if queues.get_mut(index).is_some_and(serve) {
            done.add(index);
        }
        done
    }
}

/// A device model behind the virtio-pci transport.
pub trait VirtioDevice: Send {
    /// Virtio device type ([`TYPE_NET`], [`TYPE_BLOCK`]).
    fn device_type(&self) -> u16;
    /// PCI class code (`0xBBSSPP`).
    fn pci_class(&self) -> u32;
    /// Name for logs.
    fn name(&self) -> String;
    /// Device feature bits (the transport adds [`F_VERSION_1`]).
    fn features(&self) -> u64;
    /// Maximum size of each queue (powers of two); the length is the queue count.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// The device-specific configuration structure, as the guest sees it
    /// (little-endian fields).
    fn config_space(&self) -> Vec<u8>;
    /// Reads the device-specific configuration structure: bytes past its end
    /// read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }
    /// Writes the device-specific configuration structure (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, _features: u64) {}
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Services queue `index` after a doorbell; returns the queues with new used entries.
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Completions;
    /// A host descriptor whose readability means work (e.g. net rx frames).
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// Host descriptors the backend serves on the polling thread; see
    /// `PciDevice::poll_fds`. None by default.
    fn poll_fds(&mut self, _fds: &mut Vec<libc::pollfd>, _timeout_ms: &mut i32) {}
    /// The poll's results for what [`VirtioDevice::poll_fds`] added.
    fn poll_done(&mut self, _fds: &[libc::pollfd]) {}
    /// Services the backend; returns the queues with new used entries. `active`
    /// is false before DRIVER_OK (or after an error): a device then drains its
    /// backend and drops what it reads, so a level-triggered poll never spins.
    fn process_backend(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMemoryMmap,
        _active: bool,
    ) -> Completions {
        Completions::default()
    }
}

/// Pops the next available chain of `queue`. Unlike
/// `Queue::pop_descriptor_chain`, which logs a bogus avail index at error
/// level on every doorbell without limit, it reports through
/// [`guest_log!`](crate::guest_log).
pub(crate) fn pop_chain<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
) -> Option<DescriptorChain<&'m GuestMemoryMmap>> {
    match queue.iter(mem) {
        Ok(mut it) => it.next(),
        Err(e) => {
            crate::guest_log!(warn, error = %e, "virtqueue not served");
            None
        }
    }
}

/// Returns chain `head` to the used ring with `len` bytes written. A head the
/// guest put out of range is dropped (`Queue::add_used` would log it at error
/// level, unlimited).
pub(crate) fn return_used(queue: &mut Queue, mem: &GuestMemoryMmap, head: u16, len: u32) {
    if head >= queue.size() {
        crate::guest_log!(debug, head, "avail ring entry out of range dropped");
        return;
    }
    if let Err(e) = queue.add_used(mem, head, len) {
        crate::guest_log!(debug, error = %e, "cannot return a used buffer");
    }
}

/// Copies `data.len()` bytes of a device's configuration structure `config`
/// from `offset`; bytes past its end read as zero.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| config.get(o.checked_add(i)?))
            .copied()
            .unwrap_or(0);
    }
}

/// Pops and serves every available chain of `queue` with `serve`, re-enabling
/// notifications before it stops; returns whether anything was used.
pub(crate) fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    mut serve: impl FnMut(Result<Chain, chain::ChainError>) -> u32,
) -> bool {
    drain_raw_chains(queue, mem, |dc| serve(chain::parse(dc, mem)))
}

/// [`drain_queue`] for a device that reads its chains itself (virtio-fs hands
/// them to the FUSE server): `serve` gets each chain as popped.
pub(crate) fn drain_raw_chains<'m>(
    queue: &mut Queue,
    mem: &'m GuestMemoryMmap,
    mut serve: impl FnMut(DescriptorChain<&'m GuestMemoryMmap>) -> u32,
) -> bool {
    let mut used = false;
    // A bounded number of passes: a guest that keeps adding buffers from another
    // vCPU cannot keep this exit busy forever.
    for _ in 0..4 {
        let _ = queue.disable_notification(mem);
        let budget = usize::from(queue.size()).max(1) * 2;
        for _ in 0..budget {
            // `iter` rather than `pop_descriptor_chain`: the latter logs a
            // bogus avail index at error level on every doorbell, unlimited.
            let Some(dc) = pop_chain(queue, mem) else {
                break;
            };
            let head = dc.head_index();
            let len = serve(dc);
            return_used(queue, mem, head, len);
            used = true;
        }
        match queue.enable_notification(mem) {
            Ok(true) => continue,
            _ => break,
        }
    }
    used
}
