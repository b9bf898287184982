//! Host descriptors asked about without blocking: whether input waits (the
//! simulation's stand-in for the host's event loop: irqfds, device backends)
//! and whether two name the same file. The only unsafe code of `sim`.

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

/// Whether two descriptors name the same open file (dup'd eventfds differ in
/// number but share the inode).
pub(crate) fn same_file(a: RawFd, b: RawFd) -> bool {
    let ino = |fd: RawFd| {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstat writes into `st`, a properly sized buffer we own.
        let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
        // SAFETY: fstat succeeded, so `st` is initialised.
        (r == 0).then(|| unsafe { st.assume_init() }.st_ino)
    };
    ino(a).is_some() && ino(a) == ino(b)
}
