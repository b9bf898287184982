//! Silencing a failed backend's descriptor so the device's poll loop stops waking.

use std::os::fd::RawFd;

use vmm_sys_util::eventfd::EventFd;

/// Replaces `fd` (a dead TAP or packet socket) by an eventfd that is never
/// written: the descriptor number stays valid for whoever registered it, but it
/// never polls readable again (an epoll registration of the old file is dropped
/// by the kernel when that file closes).
pub(crate) fn silence(fd: RawFd) {
    let Ok(quiet) = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) else {
        return;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: dup3 only manipulates the descriptor table; `fd` is a descriptor
    // this backend owns and keeps owning (it now names the eventfd).
    unsafe { libc::dup3(quiet.as_raw_fd(), fd, libc::O_CLOEXEC) };
}
