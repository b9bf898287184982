//! Running the tools (mmdebstrap, mke2fs, tar, depmod, chroot) in process
//! groups of their own, and stopping them on SIGINT or SIGTERM.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use super::super::{tools, ImageError};
use super::options::BootstrapOptions;
#[cfg(doc)] // the links in `run_mmdebstrap`'s doc
use super::options::{Init, PACKAGES};
use super::scratch::Scratch;

/// The signal (SIGINT/SIGTERM) that asked the build to stop, 0 if none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handlers that stop the build.
pub(super) fn catch_stop_signals() -> Result<(), ImageError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        vmm_sys_util::signal::register_signal_handler(sig, on_stop_signal).map_err(|e| {
            ImageError::Tool {
                program: "colinux-image".into(),
                why: format!("installing a handler for signal {sig}: {e}"),
            }
        })?;
    }
    Ok(())
}

/// Fails with [`ImageError::Interrupted`] once a stop signal came.
pub(super) fn check_stop() -> Result<(), ImageError> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(ImageError::Interrupted { signal }),
    }
}

/// Sends `sig` to the process group `pgid`.
fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Waits for `child` (leader of its own process group). On a stop signal
/// the group gets SIGINT, as from a terminal, and 60 s to clean up (then
/// SIGKILL); the build then fails with [`ImageError::Interrupted`].
fn wait_child(mut child: Child, program: &str) -> Result<std::process::ExitStatus, ImageError> {
    let pgid = child.id();
    let mut asked: Option<Instant> = None;
    loop {
        let status = child.try_wait().map_err(|e| ImageError::Tool {
            program: program.into(),
            why: format!("waiting for it: {e}"),
        })?;
        if let Some(status) = status {
            check_stop()?;
            return Ok(status);
        }
        if STOP_SIGNAL.load(Ordering::SeqCst) != 0 {
            match asked {
                None => {
                    signal_group(pgid, libc::SIGINT);
                    asked = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(60) => {
                    signal_group(pgid, libc::SIGKILL)
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a tool in its own process group. With `log`, its output goes to
/// that file and comes back as the error text; otherwise it goes to our
/// stdout and stderr (progress). `input` is written to its stdin.
pub(super) fn run_tool(
    program: &str,
    args: &[&OsStr],
    log: Option<&Path>,
    input: Option<&str>,
    env: &[(&str, &OsStr)],
) -> Result<(), ImageError> {
    let exe = tools::find(program).ok_or_else(|| ImageError::Tool {
        program: program.into(),
        why: format!(
            "not found in PATH or /sbin (apt-get install {})",
            package_of(program)
        ),
    })?;
    let mut cmd = Command::new(&exe);
    cmd.args(args).process_group(0);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(log) = log {
        let f = File::create(log).map_err(|e| ImageError::io(log, e))?;
        let f2 = f.try_clone().map_err(|e| ImageError::io(log, e))?;
        cmd.stdout(f).stderr(f2);
    }
    let mut child = cmd.spawn().map_err(|e| ImageError::Tool {
        program: program.into(),
        why: format!("cannot start {}: {e}", exe.display()),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let status = wait_child(child, program)?;
    if status.success() {
        return Ok(());
    }
    let output = log
        .and_then(|l| std::fs::read_to_string(l).ok())
        .map(|t| format!(":\n{}", t.trim()))
        .unwrap_or_else(|| " (its messages are above)".to_string());
    Err(ImageError::Tool {
        program: program.into(),
        why: format!("{status}{output}"),
    })
}

/// The Debian package that has `program`.
pub(super) fn package_of(program: &str) -> &'static str {
    match program {
        "mmdebstrap" => "mmdebstrap",
        "mke2fs" => "e2fsprogs",
        "depmod" => "kmod",
        "tar" => "tar",
        _ => "coreutils",
    }
}

/// Stage 1: `mmdebstrap` installs minbase, [`PACKAGES`] and the init's
/// ([`Init::packages`]) into `root`
/// (root mode when run as root, which mounts /proc, /sys and /dev in a
/// mount namespace of its own), its temp files in the scratch dir.
pub(super) fn run_mmdebstrap(
    o: &BootstrapOptions,
    mirror: &str,
    s: &Scratch,
) -> Result<(), ImageError> {
    let include = format!("--include={}", o.init.all_packages().join(","));
    let root = s.root();
    let args: Vec<&OsStr> = vec![
        OsStr::new("--mode=auto"),
        OsStr::new("--variant=minbase"),
        OsStr::new("--format=directory"),
        OsStr::new("--components=main"),
        OsStr::new(&include),
        OsStr::new(&o.suite),
        root.as_os_str(),
        OsStr::new(mirror),
    ];
    run_tool(
        "mmdebstrap",
        &args,
        None,
        None,
        &[("TMPDIR", s.dir.as_os_str())],
    )
}

/// Stage 3: `mke2fs -t ext4 -d TREE` fills `FILE.partial` (made sparse
/// first, at its full size).
pub(super) fn make_fs(o: &BootstrapOptions, partial: &Path, s: &Scratch) -> Result<(), ImageError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(|e| ImageError::io(partial, e))?;
    f.set_len(o.size).map_err(|e| ImageError::io(partial, e))?;
    drop(f);
    let root = s.root();
    let args = [
        OsStr::new("-F"),
        OsStr::new("-q"),
        OsStr::new("-t"),
        OsStr::new("ext4"),
        OsStr::new("-L"),
        OsStr::new(&o.label),
        OsStr::new("-d"),
        root.as_os_str(),
        partial.as_os_str(),
    ];
    run_tool("mke2fs", &args, Some(&s.dir.join("mke2fs.log")), None, &[]).map_err(|e| match e {
        ImageError::Tool { program, why } => ImageError::Tool {
            program,
            why: format!(
                "{why}\n(the tree is about {} MiB; is SIZE large enough?)",
                tree_mib(&root)
            ),
        },
        other => other,
    })
}

/// The tree's size in MiB (`du -sm`), or `?`.
fn tree_mib(root: &Path) -> String {
    tools::run("du", [OsStr::new("-sm"), root.as_os_str()])
        .ok()
        .and_then(|o| o.text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
