//! `colinux-console` in a pseudo-terminal against a console server started in
//! the test (no VM): hint and replay on attach, typing, window size, detach.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colinux_daemon::console_server::{protocol::Info, ConsoleServer};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_size(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }, 0);
}

/// A pty pair: (master, slave).
fn openpty() -> (std::fs::File, std::fs::File) {
    // SAFETY: plain libc pty calls on a descriptor owned here.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .unwrap()
            .to_string();
        let master = std::fs::File::from(OwnedFd::from_raw_fd(m));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags_noctty()
            .open(path)
            .unwrap();
        (master, slave)
    }
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}
impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NOCTTY)
    }
}

/// `colinux-console ARGS` on a new pty of `size` (columns, rows) with
/// `XDG_RUNTIME_DIR=runtime_dir`; with `controlling` the pty becomes its
/// controlling terminal (for SIGWINCH). Returns the child, the pty master and
/// everything the console has shown so far (read by a thread).
fn console_in_pty(
    args: &[&str],
    runtime_dir: &std::path::Path,
    size: (u16, u16),
    controlling: bool,
) -> (std::process::Child, std::fs::File, Arc<Mutex<Vec<u8>>>) {
    let (master, slave) = openpty();
    set_size(master.as_raw_fd(), size.0, size.1);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_colinux-console"));
    cmd.args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    if controlling {
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; the pty becomes
        // the child's controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
    }
    let child = cmd.spawn().unwrap();
    drop(cmd);
    let shown = Arc::new(Mutex::new(Vec::new()));
    let sc = shown.clone();
    let mut rd = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf) {
            if n == 0 {
                break;
            }
            sc.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (child, master, shown)
}

/// A console server in a fresh runtime dir (`<tmp>/colinux`, as with
/// `XDG_RUNTIME_DIR=<tmp>`) whose guest input is recorded: returns the temp
/// dir (kept alive by the caller), the server and what the consoles type.
fn recording_server(info: Info) -> (tempfile::TempDir, ConsoleServer, Arc<Mutex<Vec<u8>>>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("colinux");
    std::fs::create_dir(&dir).unwrap();
    let server = ConsoleServer::start(&dir, info).unwrap();
    let typed = Arc::new(Mutex::new(Vec::new()));
    let t = typed.clone();
    server.set_input(Some(Arc::new(move |b: &[u8]| {
        t.lock().unwrap().extend_from_slice(b);
        b.len()
    })));
    (tmp, server, typed)
}

#[test]
fn attach_type_resize_and_detach_in_a_terminal() {
    let (tmp, server, typed) = recording_server(Info {
        pid: std::process::id(),
        name: Some("t1".into()),
        ..Info::default()
    });
    server.output(b"guest says hello\r\nlogin: ");

    let (mut child, mut master, screen) =
        console_in_pty(&["-a", "t1"], tmp.path(), (100, 30), true);
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    wait_for("hint and replay", || {
        let s = shown();
        s.contains("Ctrl-] then d detaches")
            && s.contains("guest says hello")
            && s.contains("login: ")
    });
    wait_for("initial window size", || server.window() == Some((100, 30)));
    assert_eq!(server.consoles(), 1);

    master.write_all(b"root\r").unwrap();
    wait_for("typed bytes", || {
        typed.lock().unwrap().as_slice() == b"root\r"
    });

    set_size(master.as_raw_fd(), 120, 40);
    wait_for("window size after SIGWINCH", || {
        server.window() == Some((120, 40))
    });

    server.output(b"live output\r\n");
    wait_for("live output", || shown().contains("live output"));

    master.write_all(&[0x1d, b'd']).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "colinux-console did not detach"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", shown());
    // The server keeps running: the console is gone, the socket is still there.
    wait_for("console gone", || server.consoles() == 0);
    assert!(server.socket_path().exists());
    server.output(b"still here");
    assert_eq!(
        typed.lock().unwrap().as_slice(),
        b"root\r",
        "Ctrl-] d reached the guest"
    );
}

#[test]
fn attaching_to_a_missing_daemon_fails_with_status_1() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_colinux-console"))
        .args(["-a", "999999"])
        .env("XDG_RUNTIME_DIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("colinux-console: no running coLinux daemon with pid `999999`"),
        "{err}"
    );
}

#[test]
fn list_shows_a_running_daemon_and_detach_after_works_from_a_script() {
    let (tmp, server, typed) = recording_server(Info {
        pid: std::process::id(),
        name: Some("web".into()),
        conf: Some("/etc/colinux/web.conf".into()),
        started: colinux_daemon::console_server::now_secs(),
        ..Info::default()
    });
    server.output(b"replayed line\n");
    let out = Command::new(env!("CARGO_BIN_EXE_colinux-console"))
        .arg("--list")
        .env("XDG_RUNTIME_DIR", tmp.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(list.contains(&std::process::id().to_string()), "{list}");
    assert!(
        list.contains("web") && list.contains("/etc/colinux/web.conf"),
        "{list}"
    );

    // A script: input from a pipe, detached after a time.
    let mut child = Command::new(env!("CARGO_BIN_EXE_colinux-console"))
        .args(["-a", "web", "--detach-after", "1"])
        .env("XDG_RUNTIME_DIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"uname -a\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed line"));
    assert_eq!(typed.lock().unwrap().as_slice(), b"uname -a\n");
    wait_for("console gone", || server.consoles() == 0);
}

/// A 40x3 screen with a coloured title and a login prompt, cursor after it.
fn a_screen() -> colinux_devices::legacy::vga::TextScreen {
    use colinux_devices::legacy::vga::{Cursor, TextScreen, TextSize};
    let mut s = TextScreen::blank(TextSize { cols: 40, rows: 3 });
    for (i, b) in b"tty1".iter().enumerate() {
        s.cells[i].ch = *b;
        s.cells[i].attr = 0x1e;
    }
    for (i, b) in b"colinux login: ".iter().enumerate() {
        s.cells[40 + i].ch = *b;
    }
    s.cursor = Some(Cursor {
        col: 15,
        row: 1,
        shape: (13, 14),
    });
    s
}

#[test]
fn the_screen_in_a_terminal_takes_keys_and_switches_to_the_serial_log() {
    use colinux_daemon::console_server::keys::{alt_function_key, KeyEncoder};
    let (tmp, server, typed) = recording_server(Info {
        pid: std::process::id(),
        name: Some("vt".into()),
        ..Info::default()
    });
    server.set_screen(Some(Arc::new(a_screen)));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let k = keys.clone();
    server.set_keys(Some(Arc::new(move |b: &[u8]| {
        k.lock().unwrap().extend_from_slice(b);
        b.len()
    })));
    server.output(b"serial boot log\r\n");

    // `--screen`: the screen as text, one line per row.
    let out = Command::new(env!("CARGO_BIN_EXE_colinux-console"))
        .args(["-a", "vt", "--screen"])
        .env("XDG_RUNTIME_DIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tty1\ncolinux login:\n\n"
    );

    let (mut child, mut master, shown_bytes) =
        console_in_pty(&["-a", "vt", "--vt"], tmp.path(), (80, 24), false);
    let shown = || String::from_utf8_lossy(&shown_bytes.lock().unwrap()).into_owned();
    // The screen drawn: yellow on blue title, the prompt, the cursor at row 2
    // column 16 as an underline; not the serial log.
    wait_for("the screen", || {
        let s = shown();
        s.contains("\x1b[0;93;44mtty1")
            && s.contains("colinux login:")
            && s.contains("\x1b[2;16H\x1b[4 q")
    });
    assert!(!shown().contains("serial boot log"), "{}", shown());

    // Typed bytes become key presses; Ctrl-] 2 is Alt-F2.
    master.write_all(b"root\r").unwrap();
    master.write_all(&[0x1d, b'2']).unwrap();
    let mut want = KeyEncoder::default().feed(b"root\r");
    want.extend(alt_function_key(2));
    wait_for("key presses", || *keys.lock().unwrap() == want);
    assert!(
        typed.lock().unwrap().is_empty(),
        "nothing went to the serial line"
    );

    // Ctrl-] s: the serial log (kept while the screen showed), typing to it.
    master.write_all(&[0x1d, b's']).unwrap();
    wait_for("the serial log", || shown().contains("serial boot log"));
    master.write_all(b"ls\r").unwrap();
    wait_for("serial input", || {
        typed.lock().unwrap().as_slice() == b"ls\r"
    });
    assert_eq!(
        *keys.lock().unwrap(),
        want,
        "no key presses from the serial view"
    );

    master.write_all(&[0x1d, b'd']).unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "no detach");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{}", shown());
}
