//! The `slirp` backend: user-mode NAT by libslirp (the library QEMU uses).
//!
//! The guest gets 10.0.2.15 by DHCP, gateway 10.0.2.2 (which also reaches the
//! host's loopback), DNS 10.0.2.3, as in classic coLinux. libslirp runs on its own
//! thread ([`worker`]); guest frames go to it over a bounded channel plus a wake
//! eventfd, and frames it emits wait in a queue whose eventfd is [`NetBackend::ready_fd`].

mod worker;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libslirp_sys as ffi;
use vmm_sys_util::eventfd::EventFd;

use crate::stats::AtomicStats;
use crate::{frame_len_ok, NetBackend, NetError, NetStats, Protocol, Redirection};

/// The address slirp's DHCP server gives the guest.
pub const SLIRP_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The virtual gateway (and the host's loopback, seen from the guest).
pub const SLIRP_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The virtual DNS server (forwards to the host's resolver).
pub const SLIRP_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// Guest frames waiting for the slirp thread before new ones are dropped.
const TX_QUEUE_LIMIT: usize = 256;

/// User-mode NAT backend; see the module documentation.
pub struct SlirpBackend {
    to_slirp: Option<SyncSender<Vec<u8>>>,
    wake: EventFd,
    shared: Arc<worker::Shared>,
    thread: Option<JoinHandle<()>>,
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
        let efd = || {
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
                .map_err(|e| NetError::io("eventfd", e))
        };
        let wake = efd()?;
        let shared = Arc::new(worker::Shared {
            rx: Mutex::new(Default::default()),
            ready: efd()?,
            stats: AtomicStats::default(),
        });
        let (to_slirp, from_guest) = mpsc::sync_channel(TX_QUEUE_LIMIT);
        let setup = worker::Setup {
            bind,
            forwards,
            from_guest,
            wake: wake
                .try_clone()
                .map_err(|e| NetError::io("eventfd dup", e))?,
        };
        let (started_tx, started_rx) = mpsc::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("colinux-slirp".into())
            .spawn(move || worker::run(setup, sh, started_tx))
            .map_err(|e| NetError::io("spawning the slirp thread", e))?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(SlirpBackend {
                to_slirp: Some(to_slirp),
                wake,
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(NetError::SlirpInit(
                    "slirp thread ended during start-up".into(),
                ))
            }
        }
    }
}

impl NetBackend for SlirpBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let stats = &self.shared.stats;
        if !frame_len_ok(frame.len()) {
            stats.tx_drop();
            return Ok(());
        }
        let Some(tx) = &self.to_slirp else {
            stats.tx_drop();
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "slirp stopped"));
        };
        match tx.try_send(frame.to_vec()) {
            Ok(()) => {
                stats.tx_ok();
                let _ = self.wake.write(1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                // Slirp is behind; like a full NIC ring, drop and let TCP recover.
                stats.tx_drop();
                let _ = self.wake.write(1);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                stats.tx_drop();
                tracing::error!(target: "colinux_net::slirp", "slirp thread is gone");
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "slirp thread is gone",
                ))
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut q = self.shared.rx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(frame) = q.pop_front() else {
            // Reset the eventfd while holding the lock: the producer writes it
            // under the same lock after pushing, so no wake-up is lost.
            let _ = self.shared.ready.read();
            return Ok(None);
        };
        if q.is_empty() {
            let _ = self.shared.ready.read();
        }
        drop(q);
        if frame.len() > buf.len() {
            self.shared.stats.rx_drop();
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
        self.shared.stats.rx_ok();
        Ok(Some(frame.len()))
    }

    fn ready_fd(&self) -> RawFd {
        self.shared.ready.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        self.shared.stats.snapshot()
    }
}

impl Drop for SlirpBackend {
    fn drop(&mut self) {
        // Disconnecting the channel is the stop request; the wake gets it noticed.
        self.to_slirp = None;
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The libslirp version the backend is running on (for logs).
pub fn slirp_version() -> String {
    // SAFETY: libslirp returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(ffi::slirp_version_string()) }
        .to_string_lossy()
        .into_owned()
}
