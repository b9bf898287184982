//! Network backends moving Ethernet frames for the guest NIC: slirp (user-mode
//! NAT), TAP, and an AF_PACKET bridge (the classic `pcap-bridge`/`ndis-bridge`).
//!
//! Each backend is a [`NetBackend`]; the virtio-net device in `colinux-devices`
//! only ever sees this trait, so a backend can be swapped (or replaced by a
//! loopback in tests) without touching the device. [`open_backend`] builds the
//! backend a `colinux.conf` `ethN=` entry asks for. A backend may also take
//! frames with a virtio-net header asking for offloads ([`vnet`]); only the TAP
//! does.

// Every unsafe block says why it is sound; raw-pointer work lives in unsafe fns.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::io;
use std::os::fd::RawFd;

mod checksum;
mod config;
mod error;
mod netif;
mod offload;
mod packet;
mod quiet;
pub mod ratelimit;
mod slirp;
mod stats;
mod tap;
pub mod vnet;
pub mod wire;

pub use config::{open_backend, port_pairs, NetKind, NicSpec, Protocol, Redirection};
pub use error::NetError;
pub use packet::PacketBridge;
pub use slirp::{SlirpBackend, SLIRP_DNS, SLIRP_GATEWAY, SLIRP_GUEST};
pub use tap::TapBackend;
pub use vnet::{Offloads, VnetHdr};

/// Shared libraries this crate opens at run time rather than links, so `ldd`
/// does not name them (a packager or an image builder must ship them too):
/// libslirp, opened when the first slirp NIC is made.
pub const OPENED_LIBRARIES: &[&str] = &[slirp::SONAME];

/// The largest frame a backend accepts or delivers: a 1500-byte MTU Ethernet
/// frame with a VLAN tag (1518) rounded up; longer frames are counted and dropped.
pub const MAX_FRAME_LEN: usize = 1522;
/// The shortest well-formed Ethernet frame without FCS (destination, source, type).
pub const MIN_FRAME_LEN: usize = 14;

/// Moves whole Ethernet frames (no virtio-net header) between the guest NIC and
/// the outside world.
///
/// Reception is level-style: after [`NetBackend::ready_fd`] polls readable, call
/// [`NetBackend::recv`] until it returns `Ok(None)`; a backend may hold frames
/// internally (the bridge splits offloaded super-frames), so a device that stopped
/// early for lack of guest buffers calls `recv` again once buffers arrive. After a
/// fatal failure (TAP deleted, bridged interface gone) `send`/`recv` return errors
/// and the ready descriptor goes quiet, so the guest keeps running without the NIC.
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
    /// Guest-to-host offloads [`NetBackend::send_offloaded`] accepts; none by
    /// default, so the device offers none and only calls [`NetBackend::send`].
    fn offloads(&self) -> Offloads {
        Offloads::NONE
    }
    /// Host descriptors this backend serves on the caller's thread, added to
    /// `fds`, with `timeout_ms` lowered to its next timer. A backend that does
    /// its own I/O there (slirp: its sockets and timers run on the NIC's
    /// thread, so a guest frame reaches libslirp with no thread hop) adds them;
    /// the others add nothing. Poll them, then call [`NetBackend::poll_done`].
    fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) {
        let _ = (fds, timeout_ms);
    }
    /// After the poll (also when it timed out): `fds` is what
    /// [`NetBackend::poll_fds`] added, with `revents` set. The backend does its
    /// socket I/O and runs its due timers; frames for the guest then wait for
    /// [`NetBackend::recv`] as usual.
    fn poll_done(&mut self, fds: &[libc::pollfd]) {
        let _ = fds;
    }
    /// Sends one frame from the guest whose virtio-net header asks for
    /// offloads (a partial checksum, a TSO super-frame). The device has checked
    /// `hdr` against `frame` with [`VnetHdr::check_tx`] and calls this only for
    /// offloads in [`NetBackend::offloads`]; a frame the host refuses is
    /// dropped and counted, not an error. By default: unsupported.
    fn send_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<()> {
        let _ = (hdr, frame);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this backend takes no offloads",
        ))
    }
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

/// True when `len` is a frame length every backend accepts in either direction.
pub fn frame_len_ok(len: usize) -> bool {
    (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len)
}
