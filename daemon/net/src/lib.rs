//! Network backends moving Ethernet frames for the guest NIC: slirp (user-mode
//! NAT), TAP, and an AF_PACKET bridge (the classic `pcap-bridge`/`ndis-bridge`).
//!
//! Each backend is a [`NetBackend`]; the virtio-net device in `colinux-devices`
//! only ever sees this trait, so a backend can be swapped (or replaced by a
//! loopback in tests) without touching the device.

use std::io;
use std::os::fd::RawFd;

/// The largest frame a backend accepts or delivers: a 1500-byte MTU Ethernet
/// frame with a VLAN tag (1518) rounded up; longer frames are counted and dropped.
pub const MAX_FRAME_LEN: usize = 1522;
/// The shortest well-formed Ethernet frame without FCS (destination, source, type).
pub const MIN_FRAME_LEN: usize = 14;

/// Moves whole Ethernet frames (no virtio-net header) between the guest NIC and
/// the outside world.
pub trait NetBackend: Send {
    /// Sends one frame from the guest outward. A frame outside
    /// [`MIN_FRAME_LEN`]..=[`MAX_FRAME_LEN`] is dropped and counted, not an error.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Takes one frame bound for the guest into `buf`, without blocking.
    /// `Ok(None)` when nothing is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// A descriptor that polls readable when [`NetBackend::recv`] may have a frame.
    fn ready_fd(&self) -> RawFd;
    /// Counters for the note/log: frames and drops in each direction.
    fn stats(&self) -> NetStats;
}

/// Frame counters kept by every backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NetStats {
    /// Frames passed from the guest outward.
    pub tx_frames: u64,
    /// Guest frames dropped (malformed, too short or too long, backend error).
    pub tx_dropped: u64,
    /// Frames delivered toward the guest.
    pub rx_frames: u64,
    /// Frames from outside dropped before reaching the guest.
    pub rx_dropped: u64,
}
