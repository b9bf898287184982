//! Tests of the console server: replay, typers, backlog, queries, and the
//! screen and keyboard frames.

use super::*;
use std::time::Instant;

fn server(dir: &Path, name: Option<&str>) -> (ConsoleServer, Arc<Mutex<Vec<u8>>>) {
    let s = ConsoleServer::start_with(
        dir,
        Info {
            pid: std::process::id(),
            name: name.map(Into::into),
            ..Info::default()
        },
        64 * 1024,
        256 * 1024,
    )
    .unwrap();
    let typed = Arc::new(Mutex::new(Vec::new()));
    let t = typed.clone();
    s.set_input(Some(Arc::new(move |b: &[u8]| {
        t.lock().unwrap().extend_from_slice(b);
        b.len()
    })));
    (s, typed)
}

fn attach(s: &ConsoleServer) -> UnixStream {
    let mut c = UnixStream::connect(s.socket_path()).unwrap();
    protocol::write_frame(&mut c, protocol::ATTACH, &[]).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Reads frames until the DATA seen contains `needle`; gives (data, infos).
fn read_until(c: &mut UnixStream, needle: &[u8]) -> (Vec<u8>, Vec<Info>) {
    let (mut data, mut infos) = (Vec::new(), Vec::new());
    let mut seen = false;
    while !seen {
        match protocol::read_frame(c).unwrap() {
            Some((protocol::DATA, b)) => {
                let from = data.len().saturating_sub(needle.len());
                data.extend(b);
                seen = data[from..].windows(needle.len()).any(|w| w == needle);
            }
            Some((protocol::INFO, j)) => infos.push(serde_json::from_slice(&j).unwrap()),
            Some(_) => {}
            None => panic!("closed after {} bytes", data.len()),
        }
    }
    (data, infos)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_late_console_gets_the_ring_replayed_and_files_go_at_the_end() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = server(d.path(), Some("web"));
    let pid = std::process::id();
    assert!(d.path().join(format!("{pid}.json")).exists());
    assert_eq!(
        super::super::link_pid(&d.path().join("web.sock")),
        Some(pid)
    );
    // More than the ring: only the newest 64 KiB are replayed.
    for i in 0..2000 {
        s.output(format!("line {i:05} ..............................\n").as_bytes());
    }
    s.output(b"login: ");
    let mut c = attach(&s);
    let (data, infos) = read_until(&mut c, b"login: ");
    assert!(data.len() <= 64 * 1024, "{}", data.len());
    assert!(data.len() > 60 * 1024, "{}", data.len());
    assert!(!data.starts_with(b"line 00000"));
    assert!(String::from_utf8_lossy(&data).contains("line 01999"));
    // Live output follows the replay.
    s.output(b"after");
    read_until(&mut c, b"after");
    assert!(
        infos.iter().any(|i| i.typer && i.consoles == 1),
        "{infos:?}"
    );
    drop(s);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn two_watchers_see_the_output_and_only_the_first_types() {
    let d = tempfile::tempdir().unwrap();
    let (s, typed) = server(d.path(), None);
    let mut a = attach(&s);
    wait_for("first console", || s.consoles() == 1);
    s.output(b"first");
    let (_, ia) = read_until(&mut a, b"first");
    let mut b = attach(&s);
    wait_for("second console", || s.consoles() == 2);
    s.output(b"hello both\n");
    read_until(&mut a, b"hello both");
    let (_, ib) = read_until(&mut b, b"hello both");
    assert!(ia.iter().all(|i| i.typer), "{ia:?}");
    assert!(ib.iter().any(|i| !i.typer), "{ib:?}");
    protocol::write_frame(&mut b, protocol::DATA, b"from b").unwrap();
    protocol::write_frame(&mut b, protocol::RESIZE, &protocol::resize_payload(1, 1)).unwrap();
    protocol::write_frame(&mut a, protocol::DATA, b"from a").unwrap();
    protocol::write_frame(&mut a, protocol::RESIZE, &protocol::resize_payload(132, 43)).unwrap();
    wait_for("a's keys", || typed.lock().unwrap().ends_with(b"from a"));
    wait_for("a's window", || s.window() == Some((132, 43)));
    assert_eq!(typed.lock().unwrap().as_slice(), b"from a");
    // a detaches: b types now and is told so.
    protocol::write_frame(&mut a, protocol::DETACH, &[]).unwrap();
    wait_for("a gone", || s.consoles() == 1);
    s.output(b"mark");
    let (_, ib) = read_until(&mut b, b"mark");
    assert!(ib.iter().any(|i| i.typer), "{ib:?}");
    protocol::write_frame(&mut b, protocol::DATA, b" then b").unwrap();
    wait_for("b's keys", || typed.lock().unwrap().ends_with(b" then b"));
}

#[test]
fn a_console_that_stops_reading_does_not_block_output() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let d = tempfile::tempdir().unwrap();
    let (s, _) = server(d.path(), None);
    let _stuck = attach(&s); // never read
    let mut live = attach(&s);
    wait_for("two consoles", || s.consoles() == 2);
    // The live console counts what it has read, so the output below goes at
    // its pace however loaded the machine is (the stuck one is never read).
    let read = Arc::new(AtomicUsize::new(0));
    let r = read.clone();
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        loop {
            match protocol::read_frame(&mut live).unwrap() {
                Some((protocol::DATA, b)) => {
                    got += b.len();
                    r.store(got, Ordering::Relaxed);
                    if b.ends_with(b"THE END") {
                        return (got, live);
                    }
                }
                Some(_) => {}
                None => panic!("the live console was closed after {got} bytes"),
            }
        }
    });
    let chunk = [b'x'; 1000];
    let mut slowest = Duration::ZERO;
    for i in 0..2000 {
        // Keep the live console within half its backlog.
        while i * chunk.len() > read.load(Ordering::Relaxed) + 128 * 1024 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        s.output(&chunk);
        slowest = slowest.max(t.elapsed());
    }
    s.output(b"THE END");
    // Each call only appends under a short lock, even with a console that
    // stopped reading 1.7 MB ago.
    assert!(
        slowest < Duration::from_secs(1),
        "output blocked for {slowest:?}"
    );
    let (got, _live) = reader.join().unwrap();
    assert!(got >= 2_000_000, "{got}");
    wait_for("stuck console dropped", || s.consoles() == 1);
}

#[test]
fn a_query_answers_info_and_a_live_name_is_not_taken() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = server(d.path(), Some("db"));
    let _c = attach(&s);
    wait_for("console", || s.consoles() == 1);
    let i = super::super::client::query(s.socket_path()).unwrap();
    assert_eq!(
        (i.pid, i.name.as_deref(), i.consoles),
        (std::process::id(), Some("db"), 1)
    );
    // Another daemon (a live pid that is not ours) holding the name.
    let d2 = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("1.sock", d2.path().join("db.sock")).unwrap();
    let e = ConsoleServer::start(
        d2.path(),
        Info {
            pid: std::process::id(),
            name: Some("db".into()),
            ..Info::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
}

/// A screen whose first cell counts the calls, so every look differs.
fn counting_screen() -> ScreenSource {
    use colinux_devices::legacy::vga::{TextScreen, TextSize};
    let n = Arc::new(Mutex::new(0u8));
    Arc::new(move || {
        let mut g = n.lock().unwrap();
        *g = g.wrapping_add(1);
        let mut s = TextScreen::blank(TextSize { cols: 4, rows: 2 });
        s.cells[0].ch = b'0' + (*g / 10) % 10;
        s
    })
}

#[test]
fn a_snapshot_gets_one_screen_and_a_watcher_gets_changes() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = server(d.path(), None);
    // No screen yet: a snapshot gets nothing.
    assert_eq!(
        super::super::client::snapshot(s.socket_path()).unwrap(),
        None
    );
    s.set_screen(Some(counting_screen()));
    let one = super::super::client::snapshot(s.socket_path())
        .unwrap()
        .unwrap();
    assert_eq!((one.size.cols, one.size.rows), (4, 2));
    // A console sees screens only after VIEW 1, and a new one as it changes.
    let mut c = attach(&s);
    protocol::write_frame(&mut c, protocol::VIEW, &[1]).unwrap();
    let mut firsts = Vec::new();
    while firsts.len() < 2 {
        match protocol::read_frame(&mut c).unwrap() {
            Some((protocol::SCREEN, p)) => {
                let sc = super::super::screen::decode(&p).unwrap();
                firsts.push(sc.cells[0].ch);
            }
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    assert_ne!(firsts[0], firsts[1], "only changed screens are sent");
}

#[test]
fn keys_go_to_the_keyboard_from_the_typer_only() {
    let d = tempfile::tempdir().unwrap();
    let (s, typed) = server(d.path(), None);
    let keys = Arc::new(Mutex::new(Vec::new()));
    let k = keys.clone();
    // A keyboard that takes one byte at a time (a full buffer retried).
    s.set_keys(Some(Arc::new(move |b: &[u8]| {
        k.lock().unwrap().extend_from_slice(&b[..1]);
        1
    })));
    let mut a = attach(&s);
    wait_for("typer", || s.consoles() == 1);
    let mut b = attach(&s);
    wait_for("watcher", || s.consoles() == 2);
    protocol::write_frame(&mut b, protocol::KEYS, &[0x10, 0x90]).unwrap();
    protocol::write_frame(&mut a, protocol::KEYS, &[0x1e, 0x9e, 0xe0, 0x48]).unwrap();
    wait_for("a's keys", || keys.lock().unwrap().len() == 4);
    assert_eq!(keys.lock().unwrap().as_slice(), [0x1e, 0x9e, 0xe0, 0x48]);
    assert!(
        typed.lock().unwrap().is_empty(),
        "keys are not serial input"
    );
}
