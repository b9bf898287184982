//! The `tuntap` backend: a TAP device on the host (`IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR`): every frame crosses the descriptor behind a 12-byte
//! virtio-net header (`TUNSETVNETHDRSZ`).
//!
//! Guest to host, the header lets the guest's offloads through (see
//! [`crate::vnet`]): partial checksums and TCP super-frames of up to 64 KiB go
//! to the kernel as they are, which finishes or segments them only if it must.
//! Host to guest, `TUNSETOFFLOAD` with no flags tells the kernel we take no
//! offloads, so it hands over finished wire frames (at most marked
//! `F_DATA_VALID`, which needs nothing from us); a frame that still asks for
//! work is counted and dropped.
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
use crate::vnet::{self, Offloads, VnetHdr, VNET_HDR_LEN, VNET_HDR_V1_LEN};
use crate::{frame_len_ok, quiet, NetBackend, NetError, NetStats};

const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;
const IFF_NO_PI: libc::c_short = libc::IFF_NO_PI as libc::c_short;
const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;
/// The name used when the configuration gives none.
pub const DEFAULT_TAP_NAME: &str = "colinux%d";
/// Read buffer: the header plus more than any MTU a TAP could be given, so
/// oversize frames are seen whole (and dropped) instead of truncated.
const READ_BUF: usize = VNET_HDR_V1_LEN + 65536 + 64;

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
        req.flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq matches.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
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
        if let Err(e) = setup_vnet(&fd) {
            return Err(NetError::io(
                format!("setting up the virtio-net header on TAP {name}"),
                e,
            ));
        }
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

    /// Writes one frame behind its header; counts it either way.
    fn write_frame(&mut self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<()> {
        if self.failed {
            self.stats.tx_drop();
            return Err(self.dead());
        }
        let mut head = [0u8; VNET_HDR_V1_LEN];
        head[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        if let Err(e) = vnet::write_with_header(self.fd.as_raw_fd(), &head, frame) {
            self.stats.tx_drop();
            if fatal(&e) {
                return Err(self.fail("write", &e));
            }
            // EIO while the interface is down, EAGAIN when its queue is full,
            // EINVAL for a header the kernel refuses: the frame is lost like on
            // a wire; TCP in the guest recovers.
            crate::guest_log!(debug, target: "colinux_net::tap", tap = %self.name, "frame dropped: {e}");
            return Ok(());
        }
        self.stats.tx_ok();
        Ok(())
    }

    fn dead(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("TAP {} has failed", self.name),
        )
    }
}

/// Sets the header size and tells the kernel we take no offloads on reads.
fn setup_vnet(fd: &OwnedFd) -> io::Result<()> {
    let size = VNET_HDR_V1_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // No TUN_F_* flag: the kernel finishes checksums and segments before a
    // frame reaches us (the guest gets no GUEST_* offloads). Frames we write
    // may still carry offloads; the kernel accepts them whatever this says.
    let none: libc::c_ulong = 0;
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is touched.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, none) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
        if !frame_len_ok(frame.len()) && !self.failed {
            self.stats.tx_drop();
            return Ok(());
        }
        self.write_frame(&VnetHdr::default(), frame)
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
            let n = (n as usize).saturating_sub(VNET_HDR_V1_LEN);
            let mut head = [0u8; VNET_HDR_LEN];
            head.copy_from_slice(&self.buf[..VNET_HDR_LEN]);
            let hdr = VnetHdr::parse(&head);
            let finished = hdr.flags & !vnet::F_DATA_VALID == 0 && hdr.gso_type == vnet::GSO_NONE;
            if !finished || !frame_len_ok(n) || n > buf.len() {
                self.stats.rx_drop();
                continue;
            }
            buf[..n].copy_from_slice(&self.buf[VNET_HDR_V1_LEN..VNET_HDR_V1_LEN + n]);
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

    fn offloads(&self) -> Offloads {
        Offloads::ALL
    }

    fn send_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) -> io::Result<()> {
        match hdr.check_tx(frame, Offloads::ALL) {
            Err(e) if !self.failed => {
                self.stats.tx_drop();
                crate::guest_log!(debug, target: "colinux_net::tap", tap = %self.name, "frame dropped: {e}");
                Ok(())
            }
            _ => self.write_frame(hdr, frame),
        }
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
