//! Host network interface helpers: name checks, index lookup, and the
//! `SIOCGIFFLAGS`/`SIOCSIFFLAGS` ioctls to bring an interface up.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::NetError;

/// `IFNAMSIZ` minus the terminating NUL.
pub(crate) const MAX_NAME: usize = 15;

/// `struct ifreq` with the name and the flags member of its union (padded to
/// the kernel's 40 bytes).
#[repr(C)]
pub(crate) struct IfReq {
    pub name: [u8; 16],
    pub flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    /// An ifreq naming `name` (already validated) with zero flags.
    pub fn new(name: &str) -> Self {
        let mut r = IfReq {
            name: [0; 16],
            flags: 0,
            _pad: [0; 22],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    /// The name the kernel wrote back (e.g. after `colinux%d` was expanded).
    pub fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Checks an interface name: 1..=15 bytes, no NUL, `/` or whitespace.
pub(crate) fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(NetError::BadInterfaceName(name.to_string()))
    }
}

/// The interface index of `name` in this thread's network namespace, if any.
pub(crate) fn index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the interface flags (`IFF_UP`, ...).
pub(crate) fn flags(name: &str) -> io::Result<libc::c_short> {
    let s = ctl_socket()?;
    let mut r = IfReq::new(name);
    // SAFETY: SIOCGIFFLAGS reads/writes a struct ifreq, which IfReq matches.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r.flags)
}

/// Sets `IFF_UP` on an interface (no-op if it is already up).
pub(crate) fn bring_up(name: &str) -> io::Result<()> {
    let cur = flags(name)?;
    if cur & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    let s = ctl_socket()?;
    let mut r = IfReq::new(name);
    r.flags = cur | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a struct ifreq, which IfReq matches.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("colinux%d").is_ok());
        assert!(check_name("eth0").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a-very-long-name0").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn loopback_is_found() {
        let i = index("lo").expect("lo exists");
        assert!(i > 0);
        assert!(index("no-such-if0").is_none());
        assert!(flags("lo").is_ok());
    }
}
