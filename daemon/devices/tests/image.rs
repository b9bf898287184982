//! Image files behind cobd: validation errors naming the path, read-only
//! fallback, and the advisory lock between two daemons (two processes).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use colinux_devices::block::{DiskImage, ImageError};
use common::TempDir;

#[test]
fn image_errors_name_the_path() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.img");
    let e = DiskImage::open(&missing, false).unwrap_err();
    assert!(matches!(e, ImageError::NotFound { .. }));
    assert!(e.to_string().contains("nope.img"), "{e}");
    let e = DiskImage::open(&dir.0, false).unwrap_err();
    assert!(matches!(e, ImageError::IsDirectory { .. }), "{e}");
    let e = DiskImage::open(std::path::Path::new("C:\\coLinux\\root.img"), false).unwrap_err();
    assert!(matches!(e, ImageError::WindowsPath { .. }));
    assert!(e.to_string().contains("C:\\coLinux\\root.img"), "{e}");
    let e = DiskImage::open(std::path::Path::new("/dev/null"), false).unwrap_err();
    assert!(matches!(e, ImageError::NotAFile { .. }), "{e}");
    assert!(e.to_string().contains("/dev/null"));
    let sized = dir.file("odd.img", &[0u8; 1500]);
    assert_eq!(DiskImage::open(&sized, false).unwrap().sectors(), 2);
}

#[test]
fn second_open_in_one_process_is_refused() {
    let dir = TempDir::new();
    let path = dir.file("x.img", &[0u8; 4096]);
    let first = DiskImage::open(&path, false).unwrap();
    let e = DiskImage::open(&path, false).unwrap_err();
    assert!(matches!(e, ImageError::InUse { .. }), "{e}");
    assert!(
        DiskImage::open(&path, true).is_err(),
        "read-only open while a writer holds it"
    );
    drop(first);
    let a = DiskImage::open(&path, true).unwrap();
    let b = DiskImage::open(&path, true).unwrap();
    assert!(a.read_only() && b.read_only(), "two readers may share");
}

const CHILD_ENV: &str = "COLINUX_DEVICES_TEST_CHILD";

/// Child-process entry: `hold:PATH` locks an image until stdin closes;
/// `nobody:PATH` opens it as uid/gid 65534 and prints the outcome. Run as a
/// plain test (no env), it checks the child protocol's parser.
#[test]
fn child_process_helper() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        assert_eq!(parse_child("hold:/x"), Some(("hold", "/x")));
        assert_eq!(parse_child("bogus"), None);
        return;
    };
    let (what, path) = parse_child(&mode).expect("child mode");
    let path = std::path::Path::new(path);
    match what {
        "hold" => {
            let _img = DiskImage::open(path, false).expect("child opens image");
            // Straight to fd 1: the test harness captures print! but not this.
            let mut out = std::io::stdout();
            writeln!(out, "LOCKED {}", std::process::id()).unwrap();
            out.flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "nobody" => {
            // SAFETY: plain syscalls in a single-purpose child process.
            unsafe {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
            let mut out = std::io::stdout();
            match DiskImage::open(path, false) {
                Ok(img) => writeln!(out, "RESULT ok read_only={}", img.read_only()).unwrap(),
                Err(e) => writeln!(out, "RESULT err {e}").unwrap(),
            }
        }
        _ => panic!("unknown child mode {what}"),
    }
}

fn parse_child(s: &str) -> Option<(&str, &str)> {
    s.split_once(':')
        .filter(|(w, _)| matches!(*w, "hold" | "nobody"))
}

fn child(mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn second_daemon_is_refused_with_the_holders_pid() {
    let dir = TempDir::new();
    let path = dir.file("shared.img", &[0u8; 4096]);
    let mut holder = child(&format!("hold:{}", path.display()));
    let stdout = holder.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            // libtest prints "test name ... " before the child's own output.
            Ok(l) if l.contains("LOCKED ") => break l[l.find("LOCKED ").unwrap()..].to_string(),
            Ok(_) => {}
            Err(e) => {
                let _ = holder.kill();
                panic!("child never reported its lock: {e}");
            }
        }
    };
    let pid: u32 = line
        .trim()
        .strip_prefix("LOCKED ")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pid, holder.id());
    let e = DiskImage::open(&path, false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::InUse { .. }), "{msg}");
    assert!(msg.contains(&format!("pid {pid}")), "{msg}");
    assert!(msg.contains("shared.img"), "{msg}");
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    DiskImage::open(&path, false).expect("lock released when the holder exits");
}

#[test]
fn unwritable_image_opens_read_only_and_unreadable_is_refused() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!(
            "needs root to switch to uid 65534; permission paths are checked by the root run"
        );
        return;
    }
    let dir = TempDir::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ro = dir.file("ro.img", &[0u8; 4096]);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = dir.file("secret.img", &[0u8; 4096]);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

    let c = child(&format!("nobody:{}", ro.display()));
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("RESULT ok read_only=true"), "{text}");

    let c = child(&format!("nobody:{}", secret.display()));
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let result = text
        .lines()
        .find(|l| l.contains("RESULT"))
        .unwrap_or_default();
    assert!(
        result.contains("permission denied") && result.contains("secret.img"),
        "{text}"
    );
}
