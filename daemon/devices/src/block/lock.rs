//! Advisory image locks: an OFD lock for exclusion, a classic POSIX lock beside
//! it so that a refused opener can name the holder's pid.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Byte guarded by the OFD lock.
const OFD_BYTE: libc::off_t = 0;
/// Byte guarded by the classic (pid-reporting) lock.
const PID_BYTE: libc::off_t = 1;

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds a conflicting lock; the text describes them.
    Held(String),
    /// The lock call failed for another reason.
    Io(io::Error),
}

fn flock_for(kind: libc::c_short, start: libc::off_t) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    fl
}

fn fcntl_lock(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    // SAFETY: fcntl lock commands read/write the `flock` we pass by pointer; it
    // lives for the duration of the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes the locks on `file`: shared when `read_only`, exclusive otherwise.
pub fn acquire(file: &File, read_only: bool) -> Result<(), LockError> {
    let kind = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    } as libc::c_short;
    let mut ofd = flock_for(kind, OFD_BYTE);
    if let Err(e) = fcntl_lock(file, libc::F_OFD_SETLK, &mut ofd) {
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Err(LockError::Held(holder(file, kind))),
            _ => Err(LockError::Io(e)),
        };
    }
    let mut posix = flock_for(kind, PID_BYTE);
    if let Err(e) = fcntl_lock(file, libc::F_SETLK, &mut posix) {
        tracing::debug!(error = %e, "pid-reporting image lock not taken");
    }
    Ok(())
}

/// Describes who holds a lock conflicting with `kind`.
fn holder(file: &File, kind: libc::c_short) -> String {
    let mut probe = flock_for(kind, PID_BYTE);
    match fcntl_lock(file, libc::F_GETLK, &mut probe) {
        Ok(()) if probe.l_type != libc::F_UNLCK as libc::c_short && probe.l_pid > 0 => {
            format!("pid {}", probe.l_pid)
        }
        Ok(()) => format!(
            "another open of the same image (holder pid unknown; this process is {})",
            std::process::id()
        ),
        Err(e) => format!("another process (pid lookup failed: {e})"),
    }
}
