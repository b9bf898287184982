//! `colinux-console`: attach to a daemon's console socket, or list daemons.
//!
//! Attaching puts the terminal in raw mode (only when stdin is a terminal;
//! the raw-mode code is [`crate::vmm::console::RawTerminal`]) and prints the
//! escape hint. Keys: `Ctrl-]` then `d` detaches (the guest keeps running),
//! `Ctrl-]` `Ctrl-]` sends one `Ctrl-]`, `Ctrl-]` and any other key sends both.
//! The window size goes to the daemon on attach and on SIGWINCH.
//!
//! From a script (stdin not a terminal): no raw mode; the input is sent as it
//! comes and the escape works in it too (`printf 'ls\n\035d'`); at the end of
//! the input the console keeps watching until `--detach-after SECONDS` (counted
//! from the attach) runs out, the daemon ends, or a signal stops it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::protocol::{self, Info};

/// `Ctrl-]`, the escape key.
pub const ESCAPE: u8 = 0x1d;

/// The escape hint printed on attach.
pub const HINT: &str = "Ctrl-] then d detaches";

/// Splits typed bytes into what goes to the guest and a detach request.
#[derive(Debug, Default)]
pub struct Escape {
    pending: bool,
}

impl Escape {
    /// Feeds typed bytes: (bytes for the guest, whether `Ctrl-] d` was typed;
    /// bytes after it are dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'd' | b'D' => return (out, true),
                    ESCAPE => out.push(ESCAPE),
                    other => out.extend([ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The socket for `PID` or `NAME` in `dir`, or a clear message when there is none.
pub fn resolve(dir: &Path, target: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("{target}.sock"));
    if path.exists() {
        return Ok(path);
    }
    let what = if target.chars().all(|c| c.is_ascii_digit()) {
        "pid"
    } else {
        "name"
    };
    Err(format!(
        "no running coLinux daemon with {what} `{target}` ({} does not exist); \
         `colinux-console --list` shows the running ones",
        path.display()
    ))
}

/// Asks a daemon for its status.
pub fn query(socket: &Path) -> io::Result<Info> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    protocol::write_frame(&mut s, protocol::QUERY, &[])?;
    match protocol::read_frame(&mut s)? {
        Some((protocol::INFO, json)) => {
            serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        _ => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// One running daemon for `--list`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// From `<pid>.json`, with live fields from a query when it answered.
    pub info: Info,
    /// Whether the daemon answered the query.
    pub answered: bool,
}

/// Running daemons in `dir` (by pid); files of dead pids are removed.
pub fn list(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for p in &files {
        let Some(pid) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let info: Info = std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Info {
                pid,
                ..Info::default()
            });
        let sock = dir.join(format!("{pid}.sock"));
        if !super::pid_alive(pid) {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_file(&sock);
            continue;
        }
        match query(&sock) {
            Ok(live) => out.push(Entry {
                info: Info {
                    typer: false,
                    ..live
                },
                answered: true,
            }),
            Err(_) => out.push(Entry {
                info,
                answered: false,
            }),
        }
    }
    // Name links to sockets that are gone.
    for p in &files {
        if p.extension().is_some_and(|e| e == "sock") && p.is_symlink() && !p.exists() {
            let _ = std::fs::remove_file(p);
        }
    }
    out
}

/// `--list` as a table.
pub fn format_list(entries: &[Entry], now: u64) -> String {
    let mut s = format!(
        "{:>8}  {:<16} {:>10} {:>8} {:>9}  {}\n",
        "PID", "NAME", "UPTIME", "CONSOLES", "WINDOW", "CONF"
    );
    for e in entries {
        let i = &e.info;
        let up = now.saturating_sub(i.started);
        let uptime = format!("{}:{:02}:{:02}", up / 3600, up / 60 % 60, up % 60);
        let consoles = if e.answered {
            i.consoles.to_string()
        } else {
            "?".into()
        };
        let window = i
            .window
            .map(|(c, r)| format!("{c}x{r}"))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:>8}  {:<16} {:>10} {:>8} {:>9}  {}\n",
            i.pid,
            i.name.as_deref().unwrap_or("-"),
            uptime,
            consoles,
            window,
            i.conf.as_deref().unwrap_or("-")
        ));
    }
    s
}

/// The window size of the terminal on `fd`.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: a zeroed winsize is a valid out-parameter for TIOCGWINSZ.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into `ws`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    WINCH.store(true, Ordering::SeqCst);
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `Ctrl-] d` or `--detach-after`: the guest keeps running.
    Detached,
    /// The daemon closed the connection (it ended, or dropped a console that
    /// did not keep up).
    Closed,
}

enum Event {
    Detach,
    Closed,
    StdinEof,
}

/// Attaches to the console at `socket` ("`label`" in messages) until detached.
pub fn attach(socket: &Path, label: &str, detach_after: Option<Duration>) -> io::Result<End> {
    let stream = UnixStream::connect(socket)?;
    let mut w = stream.try_clone()?;
    protocol::write_frame(&mut w, protocol::ATTACH, &[])?;
    let stdin_fd = 0;
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(stdin_fd) } == 1;
    if tty {
        let _ = vmm_sys_util::signal::register_signal_handler(libc::SIGWINCH, on_winch);
        if let Some((c, r)) = window_size(stdin_fd) {
            protocol::write_frame(&mut w, protocol::RESIZE, &protocol::resize_payload(c, r))?;
        }
    }
    eprint!("colinux-console: attached to {label}. {HINT}.\r\n");
    let raw = crate::vmm::console::RawTerminal::enter();
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::vmm::console::restore_terminal();
        prev_hook(info);
    }));

    let (tx, rx) = mpsc::channel();
    let mut rd = stream.try_clone()?;
    let tx_out = tx.clone();
    std::thread::spawn(move || {
        let mut stdout = io::stdout();
        let mut told = false;
        loop {
            match protocol::read_frame(&mut rd) {
                Ok(Some((protocol::DATA, bytes))) => {
                    if stdout
                        .write_all(&bytes)
                        .and_then(|()| stdout.flush())
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(Some((protocol::INFO, json))) => {
                    if let Ok(i) = serde_json::from_slice::<Info>(&json) {
                        if !i.typer && !told {
                            eprint!("colinux-console: watching only: another console types\r\n");
                            told = true;
                        } else if i.typer && told {
                            eprint!("colinux-console: this console types now\r\n");
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = tx_out.send(Event::Closed);
    });
    let mut kw = stream.try_clone()?;
    let tx_in = tx;
    std::thread::spawn(move || {
        let mut esc = Escape::default();
        let mut buf = [0u8; 1024];
        let mut stdin = io::stdin();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx_in.send(Event::StdinEof);
                    return;
                }
                Ok(n) => n,
            };
            let (bytes, detach) = esc.feed(&buf[..n]);
            if !bytes.is_empty() && protocol::write_frame(&mut kw, protocol::DATA, &bytes).is_err()
            {
                return;
            }
            if detach {
                let _ = tx_in.send(Event::Detach);
                return;
            }
        }
    });

    let deadline = detach_after.map(|d| Instant::now() + d);
    let end = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Detach) => break End::Detached,
            Ok(Event::Closed) => break End::Closed,
            Ok(Event::StdinEof) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break End::Closed,
        }
        if WINCH.swap(false, Ordering::SeqCst) {
            if let Some((c, r)) = window_size(stdin_fd) {
                let _ = protocol::write_frame(
                    &mut w,
                    protocol::RESIZE,
                    &protocol::resize_payload(c, r),
                );
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break End::Detached;
        }
    };
    if end == End::Detached {
        let _ = protocol::write_frame(&mut w, protocol::DETACH, &[]);
        let _ = w.flush();
    }
    drop(raw);
    crate::vmm::console::restore_terminal();
    match end {
        End::Detached => eprint!("\r\ncolinux-console: detached; the guest keeps running\r\n"),
        End::Closed => eprint!("\r\ncolinux-console: the daemon closed the console\r\n"),
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences() {
        let mut e = Escape::default();
        assert_eq!(e.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.feed(&[ESCAPE, ESCAPE, b'x']), (vec![ESCAPE, b'x'], false));
        assert_eq!(e.feed(&[ESCAPE, b'q']), (vec![ESCAPE, b'q'], false));
        // Split across reads.
        assert_eq!(e.feed(b"a\x1d"), (b"a".to_vec(), false));
        assert_eq!(e.feed(b"dzz"), (vec![], true));
    }

    #[test]
    fn resolve_says_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let e = resolve(d.path(), "999999").unwrap_err();
        assert!(e.contains("pid `999999`") && e.contains("--list"), "{e}");
        std::fs::write(d.path().join("web.sock"), b"").unwrap();
        assert_eq!(resolve(d.path(), "web").unwrap(), d.path().join("web.sock"));
    }

    #[test]
    fn list_removes_dead_entries_and_formats() {
        let d = tempfile::tempdir().unwrap();
        let dead = u32::MAX - 1;
        std::fs::write(d.path().join(format!("{dead}.json")), b"{\"pid\":1}").unwrap();
        std::fs::write(d.path().join(format!("{dead}.sock")), b"").unwrap();
        std::os::unix::fs::symlink(format!("{dead}.sock"), d.path().join("old.sock")).unwrap();
        assert!(list(d.path()).is_empty());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let e = Entry {
            info: Info {
                pid: 42,
                name: Some("web".into()),
                conf: Some("/etc/colinux/web.conf".into()),
                started: 100,
                consoles: 2,
                window: Some((80, 24)),
                typer: false,
            },
            answered: true,
        };
        let t = format_list(&[e], 100 + 3661);
        assert!(
            t.contains("42") && t.contains("web") && t.contains("1:01:01"),
            "{t}"
        );
        assert!(
            t.contains("80x24") && t.contains("/etc/colinux/web.conf"),
            "{t}"
        );
    }
}
