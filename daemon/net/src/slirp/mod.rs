//! The `slirp` backend: user-mode NAT by libslirp (the library QEMU uses).
//!
//! The guest gets 10.0.2.15 by DHCP, gateway 10.0.2.2 (which also reaches the
//! host's loopback), DNS 10.0.2.3, as in classic coLinux. libslirp runs on the
//! thread that holds the backend, as in QEMU's main loop: a guest frame goes
//! straight into `slirp_input` from [`NetBackend::send`], slirp's sockets and
//! timers are served through [`NetBackend::poll_fds`]/[`NetBackend::poll_done`]
//! on the NIC's device thread, and the frames it emits wait in a queue whose
//! eventfd is [`NetBackend::ready_fd`].

mod instance;
mod library;
pub use library::SONAME;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use libslirp_sys as ffi;

use crate::{frame_len_ok, NetBackend, NetError, NetStats, Protocol, Redirection};

/// The address slirp's DHCP server gives the guest.
pub const SLIRP_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The virtual gateway (and the host's loopback, seen from the guest).
pub const SLIRP_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The virtual DNS server (forwards to the host's resolver).
pub const SLIRP_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// User-mode NAT backend; see the module documentation.
pub struct SlirpBackend {
    slirp: instance::Instance,
}

impl SlirpBackend {
    /// Starts libslirp with the given host→guest redirections, each bound to
    /// `bind` on the host (127.0.0.1 unless the user asks for more). Fails if a
    /// redirection's host port cannot be bound.
    pub fn new(redirections: &[Redirection], bind: Ipv4Addr) -> Result<Self, NetError> {
        let mut forwards = Vec::new();
        for r in redirections {
            for (host, guest) in crate::port_pairs(r)? {
                forwards.push((r.protocol == Protocol::Udp, host, guest));
            }
        }
        Ok(SlirpBackend {
            slirp: instance::Instance::new(bind, &forwards)?,
        })
    }
}

impl NetBackend for SlirpBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if !frame_len_ok(frame.len()) {
            self.slirp.worker().stats.tx_drop();
            return Ok(());
        }
        self.slirp.worker().stats.tx_ok();
        self.slirp.input(frame);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let w = self.slirp.worker();
        let mut q = w.rx.borrow_mut();
        let Some(frame) = q.pop_front() else {
            let _ = w.ready.read();
            return Ok(None);
        };
        if q.is_empty() {
            let _ = w.ready.read();
        }
        drop(q);
        if frame.len() > buf.len() {
            w.stats.rx_drop();
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "receive buffer of {} bytes for a {}-byte frame",
                    buf.len(),
                    frame.len()
                ),
            ));
        }
        buf[..frame.len()].copy_from_slice(&frame);
        w.stats.rx_ok();
        Ok(Some(frame.len()))
    }

    fn ready_fd(&self) -> RawFd {
        self.slirp.worker().ready.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        self.slirp.worker().stats.snapshot()
    }

    fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) {
        self.slirp.poll_fds(fds, timeout_ms);
    }

    fn poll_done(&mut self, fds: &[libc::pollfd]) {
        self.slirp.poll_done(fds);
    }
}
