//! `execN=PROGRAM[,"ARGS"]`: helper programs started once the guest runs
//! (after its vCPUs first start; not again on a reboot in place), their
//! stdout and stderr logged line by line (`exec0: ...`), and stopped when the
//! daemon ends, however it ends: SIGTERM to the program's process group, then
//! SIGKILL after [`STOP_GRACE`].
//!
//! `PROGRAM` with a `/` is a path (relative to the conf file's directory);
//! without one it is looked up in `PATH`. `ARGS` is split at blanks; single
//! or double quotes group words. A program that is missing or not executable
//! is a configuration error before the guest starts.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use colinux_conf::{Config, ExecProgram};

/// How long a program has to end after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Splits `ARGS` into words: blanks separate, quotes (`'` or `"`) group.
pub fn split_args(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in args.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote in the arguments"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the program to run (path or `PATH` lookup) and checks it can be
/// executed; the error is the message to show.
pub fn resolve_program(
    e: &ExecProgram,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, String> {
    let raw = &e.program.raw;
    if raw.contains('/') {
        let p = e.program.resolve();
        return match std::fs::metadata(&p) {
            Err(err) => Err(format!("`{}`: {err}", p.display())),
            Ok(m) if !m.is_file() => Err(format!("`{}` is not a file", p.display())),
            Ok(_) if !is_executable(&p) => Err(format!("`{}` is not executable", p.display())),
            Ok(_) => Ok(p),
        };
    }
    let found = path_var
        .map(|v| std::env::split_paths(v).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(raw))
        .find(|p| is_executable(p));
    found.ok_or_else(|| format!("`{raw}`: no such program in PATH"))
}

/// Checks one `execN=`: the program and its arguments.
pub fn check(e: &ExecProgram) -> Result<(PathBuf, Vec<String>), String> {
    let program = resolve_program(e, std::env::var_os("PATH").as_deref())?;
    let args = split_args(e.arguments.as_deref().unwrap_or(""))?;
    Ok((program, args))
}

struct Running {
    index: u32,
    child: Child,
}

/// The started programs; dropping this stops them.
#[derive(Default)]
pub struct Programs {
    running: Vec<Running>,
}

fn log_lines(index: u32, stream: &'static str, r: impl Read + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name(format!("exec{index}-{stream}"))
        .spawn(move || {
            for line in BufReader::new(r).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                tracing::info!("exec{index} {stream}: {}", line.trim_end_matches('\r'));
            }
        });
}

impl Programs {
    /// Starts every `execN=` of `config`.
    pub fn start(config: &Config) -> Result<Self> {
        let mut me = Self::default();
        for e in &config.exec {
            let (program, args) = check(e)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("exec{}", e.index))?;
            let mut child = crate::thread_stack::keep_from(&mut Command::new(&program))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .with_context(|| format!("exec{}: starting {}", e.index, program.display()))?;
            tracing::info!(
                pid = child.id(),
                "exec{}: started {}",
                e.index,
                program.display()
            );
            if let Some(o) = child.stdout.take() {
                log_lines(e.index, "stdout", o);
            }
            if let Some(o) = child.stderr.take() {
                log_lines(e.index, "stderr", o);
            }
            me.running.push(Running {
                index: e.index,
                child,
            });
        }
        Ok(me)
    }

    /// Stops the programs: SIGTERM to each process group, SIGKILL to what is
    /// left after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let mut left: Vec<Running> = Vec::new();
        for mut r in self.running.drain(..) {
            if let Ok(Some(st)) = r.child.try_wait() {
                tracing::info!("exec{}: had ended ({st})", r.index);
                continue;
            }
            // SAFETY: signalling the process group we created for the child.
            unsafe { libc::kill(-(r.child.id() as i32), libc::SIGTERM) };
            left.push(r);
        }
        let deadline = Instant::now() + grace;
        while !left.is_empty() {
            left.retain_mut(|r| match r.child.try_wait() {
                Ok(Some(st)) => {
                    tracing::info!("exec{}: stopped ({st})", r.index);
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
            if Instant::now() >= deadline {
                for r in &mut left {
                    tracing::warn!(
                        "exec{}: still running {}s after SIGTERM; killing it",
                        r.index,
                        grace.as_secs()
                    );
                    // SAFETY: as above.
                    unsafe { libc::kill(-(r.child.id() as i32), libc::SIGKILL) };
                    let _ = r.child.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pids of the running programs.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|r| r.child.id()).collect()
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use colinux_conf::ConfPath;

    fn prog(raw: &str, args: Option<&str>) -> ExecProgram {
        ExecProgram {
            index: 0,
            program: ConfPath::new(raw, None),
            arguments: args.map(String::from),
        }
    }

    #[test]
    fn arguments_split_with_quotes() {
        assert_eq!(split_args("").unwrap(), Vec::<String>::new());
        assert_eq!(split_args("  -a  b ").unwrap(), vec!["-a", "b"]);
        assert_eq!(
            split_args("-e 'echo hi' \"x y\"z ''").unwrap(),
            vec!["-e", "echo hi", "x yz", ""]
        );
        assert!(split_args("'open").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn programs_are_checked() {
        assert!(check(&prog("/nonexistent/prog", None))
            .unwrap_err()
            .contains("/nonexistent/prog"));
        let plain = std::env::temp_dir().join(format!("colinux-exec-test-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let r = check(&prog(plain.to_str().unwrap(), None));
        let _ = std::fs::remove_file(&plain);
        assert!(r.unwrap_err().contains("is not executable"));
        assert!(check(&prog("/", None)).unwrap_err().contains("not a file"));
        let (p, a) = check(&prog("/bin/sh", Some("-c 'exit 0'"))).unwrap();
        assert_eq!(p, PathBuf::from("/bin/sh"));
        assert_eq!(a, vec!["-c", "exit 0"]);
        let path = std::ffi::OsString::from("/nonexistent:/bin");
        assert_eq!(
            resolve_program(&prog("sh", None), Some(&path)).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(
            resolve_program(&prog("sh", None), Some("/nonexistent".as_ref()))
                .unwrap_err()
                .contains("no such program in PATH")
        );
    }

    #[test]
    fn stop_terminates_then_kills() {
        let mut stubborn = prog(
            "/bin/sh",
            Some("-c 'trap \"\" TERM; while :; do sleep 1; done'"),
        );
        stubborn.index = 0;
        let mut sleeper = prog("/bin/sleep", Some("60"));
        sleeper.index = 1;
        let c = Config {
            exec: vec![stubborn, sleeper],
            ..Config::default()
        };
        let mut p = Programs::start(&c).unwrap();
        let pids = p.pids();
        assert_eq!(pids.len(), 2);
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        p.stop(Duration::from_millis(700));
        let took = t.elapsed();
        // The shell ignores SIGTERM: only SIGKILL after the grace ends it.
        assert!(took >= Duration::from_millis(650), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        for pid in pids {
            // SAFETY: probing a pid with signal 0.
            let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
            assert!(!alive, "pid {pid} still alive");
        }
    }
}
