//! The trait every function on the PCI bus implements: what the root asks of
//! a device (its configuration space, its BARs, its doorbells and backend).

use std::os::fd::RawFd;

use super::config::PciConfig;

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
    /// Host descriptors the device's backend serves on the polling thread
    /// (slirp's sockets), added to `fds`, with `timeout_ms` lowered to its
    /// next timer; see `colinux_net::NetBackend::poll_fds`. None by default.
    fn poll_fds(&mut self, _fds: &mut Vec<libc::pollfd>, _timeout_ms: &mut i32) {}
    /// The poll's results for what [`PciDevice::poll_fds`] added.
    fn poll_done(&mut self, _fds: &[libc::pollfd]) {}
    /// The concrete device, for callers that need its own API (e.g. changing
    /// a NIC's link state): `dev.as_any_mut()?.downcast_mut::<T>()`.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}
