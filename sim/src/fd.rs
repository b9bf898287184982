//! Whether a host descriptor has input waiting, without blocking: the
//! simulation's stand-in for the host's event loop (irqfds, device backends).

use std::os::fd::RawFd;

/// Whether `fd` is readable now (`poll` with a zero timeout).
pub(crate) fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}
