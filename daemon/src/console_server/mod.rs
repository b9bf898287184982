//! The daemon's console on a Unix socket, `colinux-console` and `-d`.
//!
//! Every daemon serves its serial console (ttyS0) on
//! `<runtime dir>/<pid>.sock`, where the runtime directory is
//! `$XDG_RUNTIME_DIR/colinux/` if that variable is set, else `/run/colinux/`
//! (created mode 0700). With `--name NAME` a symlink `NAME.sock -> <pid>.sock`
//! lets consoles attach by name. `<pid>.json` holds pid, name, conf and start
//! time for `colinux-console --list`; a daemon started with `-d` logs to
//! `<pid>.log` there unless `--log-file` says otherwise. The socket, the symlink
//! and the JSON file go when the daemon ends (`--list` also removes those of
//! dead pids; logs stay for a post-mortem).
//!
//! The wire format is in [`protocol`], the server in [`server`], the
//! `colinux-console` client in [`client`], backgrounding in [`daemonize`].

pub mod client;
pub mod cp437;
pub mod daemonize;
pub mod escape;
pub mod keys;
pub mod protocol;
pub mod screen;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use server::{ConsoleServer, InputSink, ScreenSource};

/// The runtime directory: `$XDG_RUNTIME_DIR/colinux` or `/run/colinux`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("colinux"),
        _ => PathBuf::from("/run/colinux"),
    }
}

/// Creates the runtime directory (mode 0700) if needed and gives it.
pub fn ensure_runtime_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = runtime_dir();
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    Ok(dir)
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    p > 0 && (unsafe { libc::kill(p, 0) } == 0 || io_errno() == libc::EPERM)
}

fn io_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The pid a `NAME.sock` symlink points to (`<pid>.sock`).
pub fn link_pid(link: &Path) -> Option<u32> {
    let target = std::fs::read_link(link).ok()?;
    target
        .file_name()?
        .to_str()?
        .strip_suffix(".sock")?
        .parse()
        .ok()
}

/// A console name: letters, digits, `-`, `_`, `.`, `@`; not all digits (those
/// are pids) and not starting with `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
    if name.is_empty()
        || name.starts_with('.')
        || name.len() > 64
        || !name.chars().all(ok_char)
        || name.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!(
            "--name `{name}`: use 1..64 letters, digits, `-`, `_`, `.` or `@`, not only digits"
        ));
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The message for a `-t` value this build does not start (None: fine).
/// `nt` is the text console (`colinux-console`); `fltk` was the GUI one.
pub fn console_type_problem(t: Option<&str>) -> Option<String> {
    match t {
        None | Some("nt") => None,
        Some("fltk") => Some(
            "-t fltk: the FLTK console is not available; use -t nt (the text console, \
             colinux-console)"
                .into(),
        ),
        Some(other) => Some(format!(
            "-t {other}: unknown console type; the only one is `nt` (colinux-console)"
        )),
    }
}

static PLAIN_LOGS: AtomicBool = AtomicBool::new(false);

/// Logs go to a file (`-d`): no colours even if stderr was a terminal.
pub fn set_plain_logs() {
    PLAIN_LOGS.store(true, Ordering::Relaxed);
}

/// Whether [`set_plain_logs`] was called.
pub fn plain_logs() -> bool {
    PLAIN_LOGS.load(Ordering::Relaxed)
}

type Tap = Arc<dyn Fn(&[u8]) + Send + Sync>;

struct Installed {
    tap: Tap,
    server: Arc<ConsoleServer>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);

/// Makes `server` the one the VM's serial console feeds (see [`link_vm`]).
pub fn install(server: Arc<ConsoleServer>) {
    let tap: Tap = Arc::new(server.tap());
    *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Installed { tap, server });
}

/// Forgets the installed server (its files go when its last `Arc` drops).
pub fn uninstall() {
    INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// While alive, the installed server's typer types into the VM.
pub struct VmLink(Option<Arc<ConsoleServer>>);

impl Drop for VmLink {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.set_input(None);
            s.set_keys(None);
            s.set_screen(None);
        }
    }
}

/// What a VM gives the console server besides its serial output.
pub struct VmConsole {
    /// The serial line's input (the typer's DATA).
    pub serial_input: InputSink,
    /// The keyboard (the typer's KEYS, scan code set 1).
    pub keys: InputSink,
    /// The VGA text screen.
    pub screen: ScreenSource,
}

/// Connects the installed console server (if any) to a VM: guest output from
/// `out` is copied to it, its typer's keystrokes go to the serial line and
/// key presses to the keyboard, and its consoles see the screen.
pub fn link_vm(out: &crate::vmm::console::ConsoleOut, vm: VmConsole) -> VmLink {
    let guard = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = guard.as_ref() else {
        return VmLink(None);
    };
    let tap = i.tap.clone();
    out.set_tap(Box::new(move |b: &[u8]| tap(b)));
    i.server.set_input(Some(vm.serial_input));
    i.server.set_keys(Some(vm.keys));
    i.server.set_screen(Some(vm.screen));
    VmLink(Some(i.server.clone()))
}

/// Called once the vCPUs run: writes the pid file (`-p`) and tells a waiting
/// `-d` parent the daemon is up. Later calls (a reboot in place) do nothing.
pub fn vm_up(pidfile: Option<&Path>) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(p) = pidfile {
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                tracing::error!("writing the pid file {}: {e}", p.display());
            }
        }
        daemonize::notify_ready();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_console_types() {
        assert!(check_name("web-1").is_ok());
        for bad in ["", "123", ".x", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(console_type_problem(Some("nt")).is_none());
        assert!(console_type_problem(None).is_none());
        assert!(console_type_problem(Some("fltk"))
            .unwrap()
            .contains("not available"));
        assert!(console_type_problem(Some("x")).unwrap().contains("unknown"));
    }

    #[test]
    fn liveness() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }
}
