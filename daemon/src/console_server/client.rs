//! `colinux-console`: attach to a daemon's console socket, or list daemons.
//!
//! Attaching puts the terminal in raw mode (only when stdin is a terminal;
//! the raw-mode code is [`crate::vmm::terminal::RawTerminal`]) and prints the
//! escape hint ([`super::escape`]: `Ctrl-]` then `d` detaches, `s` switches
//! between the guest's VGA screen and its serial log, `1`..`6` picks
//! tty1..tty6). The window size goes to the daemon on attach and on SIGWINCH.
//!
//! Two views: the **serial log** (the guest's ttyS0; typed bytes go to the
//! serial line) and the **screen** (the guest's current virtual terminal,
//! drawn with its colours and cursor; typed bytes become key presses for its
//! PS/2 keyboard, [`super::keys`]). Both run all the time: the serial output
//! received while the screen shows is kept (the last [`SERIAL_KEPT`] bytes)
//! and shown on switching back.
//!
//! From a script (stdin not a terminal): no raw mode; the input is sent as it
//! comes and the escape works in it too (`printf 'ls\n\035d'`); at the end of
//! the input the console keeps watching until `--detach-after SECONDS` (counted
//! from the attach) runs out, the daemon ends, or a signal stops it.
//! [`snapshot`] reads the screen once (`colinux-console --screen`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use colinux_devices::legacy::vga::TextScreen;

use super::keys::{alt_function_key, KeyEncoder};
use super::protocol::{self, Info};
use super::screen;

/// Bytes of serial output kept while the screen shows.
pub const SERIAL_KEPT: usize = 64 * 1024;

pub use super::escape::{Escape, Piece, ESCAPE, HINT};

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

/// What an attached console shows first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The guest's serial console (ttyS0).
    Serial,
    /// The guest's VGA text screen (its current virtual terminal).
    Screen,
}

enum Event {
    Detach,
    Closed,
    StdinEof,
}

/// Reads the guest's screen once; `Ok(None)` when the daemon has none.
pub fn snapshot(socket: &Path) -> io::Result<Option<TextScreen>> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    protocol::write_frame(&mut s, protocol::SNAPSHOT, &[])?;
    match protocol::read_frame(&mut s)? {
        Some((protocol::SCREEN, p)) => screen::decode(&p)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a malformed screen frame")),
        _ => Ok(None),
    }
}

/// What the terminal shows, shared by the thread drawing the daemon's frames
/// and the one reading keys (which switches the view).
struct Display {
    view: View,
    serial: VecDeque<u8>,
    screen: Option<TextScreen>,
    out: io::Stdout,
}

impl Display {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }

    fn serial(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.serial.extend(bytes);
        let over = self.serial.len().saturating_sub(SERIAL_KEPT);
        self.serial.drain(..over);
        if self.view == View::Serial {
            self.write(bytes)?;
        }
        Ok(())
    }

    fn draw_screen(&mut self) -> io::Result<()> {
        if let Some(s) = &self.screen {
            let a = screen::to_ansi(s, window_size(1));
            self.write(a.as_bytes())?;
        }
        Ok(())
    }

    fn screen(&mut self, s: TextScreen) -> io::Result<()> {
        self.screen = Some(s);
        if self.view == View::Screen {
            self.draw_screen()?;
        }
        Ok(())
    }

    /// Switches the view: clears the terminal and shows the other one.
    fn switch(&mut self, to: View) -> io::Result<()> {
        self.view = to;
        self.write(b"\x1b[0m\x1b[2J\x1b[H\x1b[0 q\x1b[?25h")?;
        match to {
            View::Screen => self.draw_screen(),
            View::Serial => {
                let kept: Vec<u8> = self.serial.iter().copied().collect();
                self.write(&kept)
            }
        }
    }
}

/// Waits up to `ms` for input on fd 0.
fn stdin_ready(ms: i32) -> bool {
    let mut fds = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut fds, 1, ms) > 0 }
}

/// Attaches to the console at `socket` ("`label`" in messages), showing
/// `view` first, until detached.
pub fn attach(
    socket: &Path,
    label: &str,
    detach_after: Option<Duration>,
    view: View,
) -> io::Result<End> {
    let stream = UnixStream::connect(socket)?;
    let mut w = stream.try_clone()?;
    protocol::write_frame(&mut w, protocol::ATTACH, &[])?;
    if view == View::Screen {
        protocol::write_frame(&mut w, protocol::VIEW, &[1])?;
    }
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
    let raw = crate::vmm::terminal::RawTerminal::enter();
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::vmm::terminal::restore_terminal();
        prev_hook(info);
    }));
    let display = Arc::new(Mutex::new(Display {
        view,
        serial: VecDeque::new(),
        screen: None,
        out: io::stdout(),
    }));
    if view == View::Screen {
        let _ = lock(&display).write(b"\x1b[2J");
    }

    let (tx, rx) = mpsc::channel();
    let mut rd = stream.try_clone()?;
    let tx_out = tx.clone();
    let shown = display.clone();
    std::thread::spawn(move || {
        let mut told = false;
        loop {
            let r = match protocol::read_frame(&mut rd) {
                Ok(Some((protocol::DATA, bytes))) => lock(&shown).serial(&bytes),
                Ok(Some((protocol::SCREEN, p))) => match screen::decode(&p) {
                    Some(s) => lock(&shown).screen(s),
                    None => Ok(()),
                },
                Ok(Some((protocol::INFO, json))) => {
                    if let Ok(i) = serde_json::from_slice::<Info>(&json) {
                        if !i.typer && !told {
                            eprint!("colinux-console: watching only: another console types\r\n");
                            told = true;
                        } else if i.typer && told {
                            eprint!("colinux-console: this console types now\r\n");
                        }
                    }
                    Ok(())
                }
                Ok(Some(_)) => Ok(()),
                Ok(None) | Err(_) => break,
            };
            if r.is_err() {
                break;
            }
        }
        let _ = tx_out.send(Event::Closed);
    });
    let mut kw = stream.try_clone()?;
    let tx_in = tx;
    let typing = display.clone();
    std::thread::spawn(move || {
        let mut esc = Escape::default();
        let mut keys = KeyEncoder::default();
        let mut buf = [0u8; 1024];
        let mut stdin = io::stdin();
        let send = |kw: &mut UnixStream, kind: u8, bytes: &[u8]| {
            bytes.is_empty() || protocol::write_frame(kw, kind, bytes).is_ok()
        };
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    send(&mut kw, protocol::KEYS, &keys.flush());
                    let _ = tx_in.send(Event::StdinEof);
                    return;
                }
                Ok(n) => n,
            };
            for piece in esc.feed(&buf[..n]) {
                let ok = match piece {
                    Piece::Bytes(b) => match lock(&typing).view {
                        View::Screen => send(&mut kw, protocol::KEYS, &keys.feed(&b)),
                        View::Serial => send(&mut kw, protocol::DATA, &b),
                    },
                    Piece::Terminal(t) => send(&mut kw, protocol::KEYS, &alt_function_key(t)),
                    Piece::Toggle => {
                        let mut d = lock(&typing);
                        let to = match d.view {
                            View::Screen => View::Serial,
                            View::Serial => View::Screen,
                        };
                        let _ = d.switch(to);
                        send(&mut kw, protocol::VIEW, &[u8::from(to == View::Screen)])
                    }
                    Piece::Detach => {
                        let _ = tx_in.send(Event::Detach);
                        return;
                    }
                };
                if !ok {
                    return;
                }
            }
            // A lone ESC at the end of a read is the Esc key once the
            // terminal has been quiet a moment (a sequence comes in one go).
            if !stdin_ready(50) && !send(&mut kw, protocol::KEYS, &keys.flush()) {
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
            let mut d = lock(&display);
            if d.view == View::Screen {
                let _ = d.write(b"\x1b[2J");
                let _ = d.draw_screen();
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
    {
        let mut d = lock(&display);
        if d.view == View::Screen {
            // Leave the terminal as found: plain colours, cursor shown, below
            // the drawn screen.
            let rows = d.screen.as_ref().map_or(0, |s| s.size.rows);
            let _ = d.write(format!("\x1b[0m\x1b[0 q\x1b[?25h\x1b[{};1H", rows + 1).as_bytes());
        }
    }
    drop(raw);
    crate::vmm::terminal::restore_terminal();
    match end {
        End::Detached => eprint!("\r\ncolinux-console: detached; the guest keeps running\r\n"),
        End::Closed => eprint!("\r\ncolinux-console: the daemon closed the console\r\n"),
    }
    Ok(end)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
