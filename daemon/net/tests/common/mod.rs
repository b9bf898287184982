//! Helpers for the backend tests: network namespaces the test creates and
//! removes itself, hand-built frames, and waiting for a frame from a backend.

#![allow(dead_code)]

pub mod frames;
pub mod tcp;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use colinux_net::NetBackend;

/// True when running as root; otherwise prints why the test is skipped.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP {test}: needs root (network namespaces, TAP, AF_PACKET)");
    }
    root
}

/// A network namespace made by the test; deleted on drop (every path, panics too).
pub struct NetNs {
    /// The namespace's name under /run/netns.
    pub name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    /// Creates a uniquely named namespace with its loopback up.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "colnet-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NS ARGS...`, panicking with its output on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `ip -n NS ARGS...` and reports success.
    pub fn ip_ok(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets and devices
    /// it creates live in the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("thread in netns panicked")
    }

    /// Starts `f` on a thread inside the namespace without waiting.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (by polling the backend's ready fd) for a frame `want` accepts;
/// other frames are skipped. `None` after `timeout`.
pub fn wait_frame(
    backend: &mut dyn NetBackend,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(n) = backend.recv(&mut buf).expect("recv") {
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let mut ms = left.as_millis().clamp(1, 100) as i32;
        let mut fds = vec![libc::pollfd {
            fd: backend.ready_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // A backend serving its own sockets here (slirp) is polled with it.
        backend.poll_fds(&mut fds, &mut ms);
        // SAFETY: `fds` is a valid array of pollfd for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(0)) };
        backend.poll_done(&fds[1..]);
    }
}

/// True when `fd` polls readable right now.
pub fn readable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// True when an interface of this name exists in the namespace.
pub fn link_exists(ns: &NetNs, name: &str) -> bool {
    ns.ip_ok(&["link", "show", "dev", name])
}
