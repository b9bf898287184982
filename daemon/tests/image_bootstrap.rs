//! `colinux-image bootstrap`: argument errors, and failed or interrupted
//! builds leaving nothing behind. None of these needs the network.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colinux_daemon::image::tools;

mod common;
use common::{bin, s, scratch, stderr};

/// Where this file's scratch directories go.
const GROUP: &str = "bootstrap-tests";

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether this machine can run a real build (root and mmdebstrap); if not,
/// says why on stderr.
fn can_build() -> bool {
    if tools::find("mmdebstrap").is_none() {
        eprintln!("mmdebstrap is not installed: checking the error that says so instead");
        return false;
    }
    true
}

#[test]
fn bad_sizes_are_usage_errors() {
    let d = scratch(GROUP, "bad-size");
    let f = d.join("debian.img");
    let out = bin(&["bootstrap", s(&f), "512"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad size `512`"), "{}", stderr(&out));
    let out = bin(&["bootstrap", s(&f), "1G", "--swap", s(&d.join("sw")), "12X"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad size `12X`"), "{}", stderr(&out));
    let out = bin(&["bootstrap", s(&f), "1G", "--swap", s(&d.join("sw")), "1K"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("swap size 1024 bytes"),
        "{}",
        stderr(&out)
    );
    assert!(listing(&d).is_empty(), "left: {:?}", listing(&d));
}

#[test]
fn existing_files_are_kept_without_force() {
    let d = scratch(GROUP, "exists");
    let f = d.join("debian.img");
    std::fs::write(&f, b"precious").unwrap();
    let out = bin(&["bootstrap", s(&f), "1G"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists; refusing to overwrite"));
    assert!(stderr(&out).contains("debian.img"));
    assert_eq!(std::fs::read(&f).unwrap(), b"precious");

    let sw = d.join("swap.img");
    std::fs::write(&sw, b"mine").unwrap();
    let out = bin(&[
        "bootstrap",
        s(&d.join("new.img")),
        "1G",
        "--swap",
        s(&sw),
        "64M",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("swap.img` already exists"));
    assert_eq!(std::fs::read(&sw).unwrap(), b"mine");
    assert_eq!(listing(&d), ["debian.img", "swap.img"]);
}

#[test]
fn bad_option_values_are_refused_before_building() {
    let d = scratch(GROUP, "bad-values");
    let f = d.join("debian.img");
    let missing = d.join("no-such-modules.tar.gz");
    let out = bin(&["bootstrap", s(&f), "1G", "--modules", s(&missing)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no-such-modules.tar.gz"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));

    let out = bin(&["bootstrap", s(&f), "1G", "--hostname", "my.host"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--hostname `my.host`"),
        "{}",
        stderr(&out)
    );

    let out = bin(&["bootstrap", s(&f), "1G", "--init", "upstart"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[possible values: systemd, sysvinit]"),
        "{}",
        stderr(&out)
    );

    let private = d.join("id_ed25519");
    std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").unwrap();
    let out = bin(&["bootstrap", s(&f), "1G", "--authorized-key", s(&private)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("private key"), "{}", stderr(&out));
    assert_eq!(listing(&d), ["id_ed25519"]);
}

#[test]
fn a_modules_tarball_outside_lib_modules_is_refused() {
    let d = scratch(GROUP, "bad-modules");
    let src = d.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/passwd"), "x").unwrap();
    let tarball = d.join("m.tar.gz");
    let ok = Command::new("tar")
        .args(["-C", s(&src), "-czf", s(&tarball), "etc"])
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::remove_dir_all(&src).unwrap();
    let f = d.join("debian.img");
    let out = bin(&["bootstrap", s(&f), "1G", "--modules", s(&tarball)]);
    assert_eq!(listing(&d), ["m.tar.gz"], "{}", stderr(&out));
    if can_build() {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("member `etc/` is not under lib/modules/"),
            "{}",
            stderr(&out)
        );
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("apt-get install mmdebstrap"));
    }
}

#[test]
fn an_unreachable_mirror_fails_and_leaves_nothing() {
    let d = scratch(GROUP, "bad-mirror");
    let f = d.join("debian.img");
    let sw = d.join("swap.img");
    let out = bin(&[
        "bootstrap",
        s(&f),
        "1G",
        "--swap",
        s(&sw),
        "64M",
        "--mirror",
        "http://127.0.0.1:9/debian",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    if can_build() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(
                "bootstrap [1/4] mmdebstrap: Debian bookworm from http://127.0.0.1:9/debian"
            ),
            "{text}"
        );
        assert!(text.contains("(init: systemd)"), "{text}");
        assert!(
            stderr(&out).contains("colinux-image: mmdebstrap: exit status"),
            "{}",
            stderr(&out)
        );
    } else {
        assert!(stderr(&out).contains("apt-get install mmdebstrap"));
    }
    assert!(listing(&d).is_empty(), "left: {:?}", listing(&d));
}

/// A "mirror" that accepts connections and never answers: apt waits.
fn silent_mirror() -> (String, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/debian", l.local_addr().unwrap());
    let l2 = l.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l2.incoming().flatten() {
            held.push(c);
        }
    });
    (url, l)
}

#[test]
fn sigterm_during_mmdebstrap_stops_and_leaves_nothing() {
    let d = scratch(GROUP, "sigterm");
    if !can_build() {
        let out = bin(&["bootstrap", s(&d.join("x.img")), "1G"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("apt-get install mmdebstrap"));
        assert!(listing(&d).is_empty());
        return;
    }
    let (url, _listener) = silent_mirror();
    let f = d.join("debian.img");
    let mut child = Command::new(env!("CARGO_BIN_EXE_colinux-image"))
        .args(["bootstrap", s(&f), "1G", "--mirror", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until mmdebstrap runs (its scratch dir holds the tree).
    let start = Instant::now();
    while !listing(&d).iter().any(|n| n.contains(".bootstrap-")) {
        assert!(start.elapsed() < Duration::from_secs(30), "no scratch dir");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("stopped by signal 15"), "{err}");
    assert!(listing(&d).is_empty(), "left: {:?}", listing(&d));
}
