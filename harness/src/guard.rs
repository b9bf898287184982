//! Kill what we started, on every path: a Drop guard per child process group,
//! plus SIGINT/SIGTERM/SIGHUP handlers that kill every live group and exit.

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const SLOTS: usize = 16;
static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &GROUPS {
        let pg = slot.load(Ordering::SeqCst);
        if pg != 0 {
            // SAFETY: kill(2) is async-signal-safe; pg names a group (or pid) we created.
            unsafe { libc::kill(-pg, libc::SIGKILL) };
        }
    }
    // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(128 + sig) };
}

/// Install the signal handlers once (idempotent).
pub fn install_signal_handlers() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Owns a child started in its own process group; dropping it kills the group.
pub struct GroupGuard {
    child: Option<Child>,
    pgid: i32,
    slot: Option<usize>,
}

impl GroupGuard {
    /// Take ownership of `child`, which must have been spawned with `process_group(0)`.
    pub fn new(child: Child) -> Self {
        Self::with_target(child, true)
    }

    /// Take ownership of a child left in our own process group (an interactive
    /// child that must stay in the terminal's foreground group): only it is killed.
    pub fn pid_only(child: Child) -> Self {
        Self::with_target(child, false)
    }

    fn with_target(child: Child, group: bool) -> Self {
        install_signal_handlers();
        let id = child.id() as i32;
        // Negative: a process group; positive: a single pid (both valid kill(2) targets).
        let pgid = if group { id } else { -id };
        let slot = GROUPS.iter().position(|s| {
            s.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        Self {
            child: Some(child),
            pgid,
            slot,
        }
    }

    /// The child (for its pipes and exit status).
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }

    /// Kill the whole process group (or the single child) now and reap it.
    pub fn kill(&mut self) {
        let exited = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
        // A reaped single pid may be reused: only groups are signalled after exit.
        if !exited || self.pgid > 0 {
            // SAFETY: signalling the group/pid we created; harmless if already gone.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        if let Some(i) = self.slot {
            GROUPS[i].store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn dropping_the_guard_kills_the_whole_group() {
        let child = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut g = GroupGuard::new(child);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(g.child().stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        drop(g);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!alive(pid), "shell survived");
        // The grandchild is reparented and reaped by init once killed.
        let gone = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            !alive(grandchild)
                || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        });
        assert!(gone, "grandchild {grandchild} survived");
    }
}
