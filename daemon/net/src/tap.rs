//! The `tuntap` backend: a TAP device on the host (`IFF_TAP | IFF_NO_PI`, no
//! virtio-net header, so the kernel hands over finished wire frames).
//!
//! The device is named from the configuration, or `colinux%d` (the kernel picks
//! the number). It is created if absent and brought up; the host side's address
//! is the user's business (`ip addr add ...`). A TAP we create is not persistent
//! and disappears when the backend closes it; a persistent TAP that already
//! existed is attached to and left in place.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::netif::{self, IfReq};
use crate::stats::AtomicStats;
use crate::{frame_len_ok, quiet, NetBackend, NetError, NetStats};

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
/// The name used when the configuration gives none.
pub const DEFAULT_TAP_NAME: &str = "colinux%d";
/// Read buffer: larger than any MTU a TAP could be given, so oversize frames
/// are seen whole (and dropped) instead of truncated.
const READ_BUF: usize = 65536 + 64;

/// A TAP device; see the module documentation.
pub struct TapBackend {
    fd: OwnedFd,
    name: String,
    created: bool,
    failed: bool,
    stats: AtomicStats,
    buf: Box<[u8]>,
}

impl TapBackend {
    /// Opens (creating if absent) and brings up the TAP device `name`, or a
    /// fresh `colinux%d` when `None`.
    pub fn open(name: Option<&str>) -> Result<Self, NetError> {
        let want = name.unwrap_or(DEFAULT_TAP_NAME);
        netif::check_name(want)?;
        let existed = !want.contains('%') && netif::index(want).is_some();
        let path: &CStr = c"/dev/net/tun";
        // SAFETY: open(2) on a constant path; the result is checked and owned.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(NetError::last_os("opening /dev/net/tun"));
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq::new(want);
        req.flags = IFF_TAP | IFF_NO_PI;
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq matches.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => " (in use by another program)",
                Some(libc::EINVAL) => " (an interface of that name exists and is not a TAP)",
                Some(libc::EPERM) => " (needs CAP_NET_ADMIN)",
                _ => "",
            };
            return Err(NetError::io(
                format!("creating TAP device {want:?}{hint}"),
                e,
            ));
        }
        let name = req.name();
        if let Err(e) = netif::bring_up(&name) {
            return Err(NetError::io(format!("bringing TAP device {name} up"), e));
        }
        tracing::info!(target: "colinux_net::tap", tap = %name, created = !existed, "TAP device ready");
        Ok(TapBackend {
            fd,
            name,
            created: !existed,
            failed: false,
            stats: AtomicStats::default(),
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
        })
    }

    /// The TAP device's name on the host (after `%d` expansion).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when this backend created the device (it goes away with the backend).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Marks the backend dead after an error that will not heal.
    fn fail(&mut self, what: &str, e: &io::Error) -> io::Error {
        if !self.failed {
            self.failed = true;
            tracing::error!(target: "colinux_net::tap", tap = %self.name, "{what}: {e}; the NIC is now disconnected");
            quiet::silence(self.fd.as_raw_fd());
        }
        io::Error::new(e.kind(), format!("TAP {} failed: {e}", self.name))
    }

    fn dead(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("TAP {} has failed", self.name),
        )
    }
}

/// Errors after which the TAP will never work again (device deleted).
fn fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO)
    )
}

impl NetBackend for TapBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.failed {
            self.stats.tx_drop();
            return Err(self.dead());
        }
        if !frame_len_ok(frame.len()) {
            self.stats.tx_drop();
            return Ok(());
        }
        // SAFETY: write(2) from a valid slice to our descriptor.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n >= 0 {
            self.stats.tx_ok();
            return Ok(());
        }
        let e = io::Error::last_os_error();
        self.stats.tx_drop();
        if fatal(&e) {
            return Err(self.fail("write", &e));
        }
        // EIO while the interface is down, EAGAIN when its queue is full: the
        // frame is lost like on a wire; TCP in the guest recovers.
        tracing::debug!(target: "colinux_net::tap", tap = %self.name, "frame dropped: {e}");
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.failed {
            return Err(self.dead());
        }
        loop {
            // SAFETY: read(2) into our own buffer of its full length.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ if fatal(&e) => Err(self.fail("read", &e)),
                    _ => Err(e),
                };
            }
            let n = n as usize;
            if !frame_len_ok(n) || n > buf.len() {
                self.stats.rx_drop();
                continue;
            }
            buf[..n].copy_from_slice(&self.buf[..n]);
            self.stats.rx_ok();
            return Ok(Some(n));
        }
    }

    fn ready_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn stats(&self) -> NetStats {
        self.stats.snapshot()
    }
}

impl Drop for TapBackend {
    fn drop(&mut self) {
        if self.created {
            tracing::info!(target: "colinux_net::tap", tap = %self.name, "closing TAP device (removed with it)");
        } else {
            tracing::info!(target: "colinux_net::tap", tap = %self.name, "leaving persistent TAP device in place");
        }
    }
}
