//! Host terminals in raw mode: the daemon's (and colinux-console's) own
//! stdin while the guest's console is on it, restored on every exit path
//! (drop, signal, panic), and the `ttysN=` host tty devices.
//!
//! Not `vmm_sys_util::terminal::Terminal`: its raw mode only clears
//! `ICANON | ECHO | ISIG` (leaving `IXON`, `ICRNL`, `IEXTEN`, so Ctrl-S, Ctrl-Q,
//! Ctrl-V and Enter would not reach the guest as typed) and it keeps no
//! attributes to restore; this is `cfmakeraw` with the old attributes kept.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

/// Puts the terminal `fd` in raw mode (`cfmakeraw`), keeping output
/// post-processing when `keep_opost`; returns the attributes it had.
pub fn make_raw(fd: RawFd, keep_opost: bool) -> io::Result<libc::termios> {
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `saved` is a valid termios to fill; a bad fd is an error return.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut raw = saved;
    // SAFETY: cfmakeraw edits the struct in place.
    unsafe { libc::cfmakeraw(&mut raw) };
    if keep_opost {
        raw.c_oflag |= libc::OPOST;
    }
    // SAFETY: `raw` is a valid termios; a bad fd is an error return.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(saved)
}

static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts stdin in raw mode while alive (only when it is a terminal).
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    /// Enters raw mode if stdin is a terminal.
    pub fn enter() -> Self {
        // Not a terminal: tcgetattr fails (ENOTTY) and nothing changes.
        // Output post-processing stays, so the host terminal shows "\n" as a
        // new line.
        match make_raw(io::stdin().as_raw_fd(), true) {
            Ok(saved) => {
                *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
                Self { active: true }
            }
            Err(_) => Self { active: false },
        }
    }
}

/// Restores the terminal saved by [`RawTerminal::enter`] (idempotent; safe to call
/// from a panic hook or before exiting).
pub fn restore_terminal() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        // SAFETY: restoring attributes previously read from this terminal.
        unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, &t) };
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            restore_terminal();
        }
    }
}
