//! `colinux-daemon -d`: run in the background for real.
//!
//! The daemon forks once; the child calls `setsid`, points stdin and stdout at
//! `/dev/null` and stderr (its log) at `<runtime dir>/<pid>.log` or
//! `--log-file`, and boots the VM. The parent waits on a pipe until the child
//! says the VM is up ([`notify_ready`], after the pid file is written), prints
//! the pid and exits 0 — or, if the child dies first, shows the end of its log
//! and exits with the child's status. With `-t nt` the parent then becomes
//! `colinux-console -a <pid>`.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

static READY_FD: AtomicI32 = AtomicI32::new(-1);

/// Which side of the fork this is.
pub enum Forked {
    /// The foreground process: wait with [`wait_ready`].
    Parent {
        /// The background daemon's pid.
        pid: i32,
        /// Read end of the readiness pipe.
        ready: OwnedFd,
        /// The daemon's log.
        log: PathBuf,
    },
    /// The background daemon: go on booting.
    Child,
}

/// Forks; the child detaches from the terminal and logs to `log` (default
/// `<dir>/<pid>.log`).
pub fn fork_background(dir: &Path, log: Option<&Path>) -> std::io::Result<Forked> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the daemon is single-threaded here (called before any thread starts).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let log_for = |p: u32| log.map_or_else(|| dir.join(format!("{p}.log")), Path::to_path_buf);
    if pid > 0 {
        drop(w);
        return Ok(Forked::Parent {
            pid,
            ready: r,
            log: log_for(pid as u32),
        });
    }
    drop(r);
    // SAFETY: setsid in the fresh child (never a group leader).
    unsafe { libc::setsid() };
    let path = log_for(std::process::id());
    let logf = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: duplicating open descriptors onto the standard ones.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(logf.as_raw_fd(), 2);
    }
    READY_FD.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::SeqCst);
    Ok(Forked::Child)
}

/// In the background daemon: tells the parent the VM is up (once).
pub fn notify_ready() {
    let fd = READY_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is the pipe's write end, owned by this process; taken once.
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(f);
        let _ =
            std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes());
    }
}

/// In the parent: waits for the child to be up; gives the exit status for
/// the parent (and with `console_nt` execs `colinux-console -a PID`).
pub fn wait_ready(pid: i32, ready: OwnedFd, log: &Path, console_nt: bool) -> u8 {
    let mut said = String::new();
    let _ = std::fs::File::from(ready).read_to_string(&mut said);
    if said.trim().is_empty() {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status).clamp(1, 255) as u8
        } else {
            1
        };
        eprintln!(
            "colinux-daemon: the background daemon (pid {pid}) ended before the VM was up; \
             its log {}:",
            log.display()
        );
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  {l}");
        }
        return code;
    }
    eprintln!(
        "colinux-daemon: running in the background as pid {pid}; console: \
         colinux-console -a {pid}; log: {}",
        log.display()
    );
    if console_nt {
        let console = std::env::current_exe()
            .ok()
            .map(|e| e.with_file_name("colinux-console"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("colinux-console"));
        let err = crate::thread_stack::keep_from(&mut std::process::Command::new(&console))
            .arg("-a")
            .arg(pid.to_string())
            .exec();
        eprintln!(
            "colinux-daemon: -t nt: starting {}: {err}",
            console.display()
        );
        return 1;
    }
    0
}
