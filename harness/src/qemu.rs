//! The QEMU bridge: builds a host-VM command line, starts it under a process
//! guard and reads its serial console line by line with deadlines.

use crate::guard::GroupGuard;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Instant;

/// The accelerator of the outer (host) VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Accel {
    /// Hardware KVM with nested virtualization (only where the probe passed).
    Kvm,
    /// TCG emulating an AMD CPU with SVM, so the host VM gets kvm_amd.
    Tcg,
}

/// A host VM: the Debian kernel plus our host initramfs, no network device.
#[derive(Debug, Clone)]
pub struct HostVm {
    /// QEMU binary (normally `qemu-system-x86_64`).
    pub qemu: String,
    /// Kernel image (bzImage).
    pub kernel: PathBuf,
    /// Host initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub append: String,
    /// RAM in MiB.
    pub mem_mib: u32,
    /// vCPUs.
    pub smp: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Raw disks as (file, virtio serial).
    pub disks: Vec<(PathBuf, String)>,
    /// QMP socket and heartbeat file for the watchdogs (None: interactive runs).
    pub control: Option<Control>,
}

/// How the harness watches a host VM besides its console: QEMU's QMP socket,
/// and a second serial port (ttyS1 in the host VM) kept in a file, where the
/// host init writes its heartbeat.
#[derive(Debug, Clone)]
pub struct Control {
    /// QMP Unix socket (short path: sun_path holds 108 bytes).
    pub qmp_socket: PathBuf,
    /// File behind the host VM's ttyS1.
    pub beat_file: PathBuf,
}

impl Control {
    /// A control pair with the QMP socket under the temp dir (unique per
    /// process and call) and the heartbeat file in `dir`.
    pub fn new(dir: &Path) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            qmp_socket: std::env::temp_dir()
                .join(format!("colinux-qmp-{}-{n}.sock", std::process::id())),
            beat_file: dir.join("host-beat.log"),
        }
    }
}

impl HostVm {
    /// The full argument vector (without the program name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        match self.accel {
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
            Accel::Tcg => {
                push("-accel");
                push("tcg,thread=multi");
                push("-cpu");
                push("EPYC,+svm");
            }
        }
        for s in [
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-serial",
            "stdio",
        ] {
            push(s);
        }
        push("-m");
        push(&self.mem_mib.to_string());
        push("-smp");
        push(&self.smp.to_string());
        push("-kernel");
        push(&self.kernel.display().to_string());
        push("-initrd");
        push(&self.initrd.display().to_string());
        push("-append");
        push(&self.append);
        if let Some(c) = &self.control {
            push("-serial");
            push(&format!("file:{}", c.beat_file.display()));
            push("-qmp");
            push(&format!(
                "unix:{},server=on,wait=off",
                c.qmp_socket.display()
            ));
        }
        for (i, (file, serial)) in self.disks.iter().enumerate() {
            push("-drive");
            push(&format!(
                "file={},if=none,id=d{i},format=raw,cache=unsafe",
                file.display()
            ));
            push("-device");
            push(&format!("virtio-blk-pci,drive=d{i},serial={serial}"));
        }
        a
    }

    /// The command line as one shell-quoted string (for logs).
    pub fn command_line(&self) -> String {
        std::iter::once(self.qemu.clone())
            .chain(self.args())
            .map(|s| shell_quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Start the VM with its console captured (lines also appended to `log`).
    pub fn spawn(&self, log: &Path) -> Result<Console> {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.qemu))?;
        Console::attach(child, log)
    }

    /// Start the VM with the console on this terminal and wait; stdin is passed
    /// through when `stdin_through`, else /dev/null.
    pub fn run_interactive(&self, stdin_through: bool) -> Result<ExitStatus> {
        let child = Command::new(&self.qemu)
            .args(self.args())
            .stdin(if stdin_through {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("starting {}", self.qemu))?;
        let mut guard = GroupGuard::pid_only(child);
        Ok(guard.child().wait()?)
    }
}

/// Quote a word for a POSIX shell (only when needed).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What reading the console produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// One console line (CR stripped).
    Line(String),
    /// The VM closed its console (it exited).
    Eof,
    /// The deadline passed first.
    Timeout,
}

/// A running VM's serial console; dropping it kills the VM.
pub struct Console {
    guard: GroupGuard,
    rx: Receiver<String>,
    eof: bool,
}

impl Console {
    fn attach(mut child: std::process::Child, log: &Path) -> Result<Self> {
        let out = child.stdout.take().context("qemu stdout")?;
        let err = child.stderr.take().context("qemu stderr")?;
        let guard = GroupGuard::new(child);
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let (tx, rx) = channel();
        let mut logo = logf.try_clone()?;
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&buf);
                        let s = s.trim_end_matches(['\n', '\r']).replace('\r', "");
                        let _ = writeln!(logo, "{s}");
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut loge = logf;
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(err).read_to_string(&mut s);
            for l in s.lines() {
                let _ = writeln!(loge, "qemu-stderr: {l}");
            }
        });
        Ok(Self {
            guard,
            rx,
            eof: false,
        })
    }

    /// The next console line, or EOF, or Timeout when `deadline` passes first.
    pub fn next_event(&mut self, deadline: Instant) -> ConsoleEvent {
        if self.eof {
            return ConsoleEvent::Eof;
        }
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        match self.rx.recv_timeout(left) {
            Ok(l) => ConsoleEvent::Line(l),
            Err(RecvTimeoutError::Timeout) => ConsoleEvent::Timeout,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                ConsoleEvent::Eof
            }
        }
    }

    /// Wait for the VM to exit (up to `deadline`), then kill whatever is left.
    pub fn finish(mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Ok(Some(st)) = self.guard.child().try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                self.guard.kill();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_vm_has_no_network_and_quotes_append() {
        let vm = HostVm {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            append: "console=ttyS0 quiet".into(),
            mem_mib: 512,
            smp: 2,
            accel: Accel::Tcg,
            disks: vec![("/w.img".into(), "work".into())],
            control: Some(Control {
                qmp_socket: "/tmp/q.sock".into(),
                beat_file: "/d/host-beat.log".into(),
            }),
        };
        let a = vm.args();
        // ttyS0 is the console, ttyS1 the heartbeat file
        let serials: Vec<&String> = a
            .windows(2)
            .filter(|w| w[0] == "-serial")
            .map(|w| &w[1])
            .collect();
        assert_eq!(serials, ["stdio", "file:/d/host-beat.log"]);
        assert!(a.contains(&"unix:/tmp/q.sock,server=on,wait=off".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "-nic" && w[1] == "none"));
        assert!(a.contains(&"-nodefaults".to_string()));
        assert!(a.contains(&"EPYC,+svm".to_string()));
        assert!(a.contains(&"virtio-blk-pci,drive=d0,serial=work".to_string()));
        assert!(vm.command_line().contains("'console=ttyS0 quiet'"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert_eq!(shell_quote("-m"), "-m");
        assert_eq!(shell_quote(""), "''");
    }
}
