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

/// Whether two descriptors name the same open file description (a dup'd
/// eventfd differs in number but is the same file). Asked of the kernel with
/// `kcmp(KCMP_FILE)`: inode numbers cannot tell, since every eventfd shares
/// the one anonymous inode. Where kcmp is not available (a kernel without
/// it, or a sandbox refusing it) the answer falls back to the descriptor
/// numbers being equal.
pub(crate) fn same_file(a: RawFd, b: RawFd) -> bool {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // SAFETY: kcmp only compares the two descriptors of this process; it
    // reads no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_FILE, a, b) };
    match r {
        0 => true,
        r if r > 0 => false,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn distinct_eventfds_differ_and_a_dup_is_the_same() {
        let a = EventFd::new(0).unwrap();
        let b = EventFd::new(0).unwrap();
        let c = a.try_clone().unwrap();
        assert!(same_file(a.as_raw_fd(), a.as_raw_fd()));
        assert!(
            same_file(a.as_raw_fd(), c.as_raw_fd()),
            "a dup is the same file"
        );
        assert!(
            !same_file(a.as_raw_fd(), b.as_raw_fd()),
            "two eventfds share an inode number but are different files"
        );
    }
}
