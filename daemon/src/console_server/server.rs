//! The console server: one Unix socket per daemon that any number of
//! `colinux-console`s attach to.
//!
//! - Guest output goes into a ring of the last [`RING`] bytes (replayed to a
//!   console that attaches late) and to every attached console's own queue.
//!   [`ConsoleServer::output`] only appends under a short lock: it never waits
//!   for a client. A console whose queue grows beyond [`BACKLOG`] bytes (it
//!   stopped reading) is disconnected, so a stuck client never stalls the guest.
//! - Several consoles may watch at once; **the one attached longest types**
//!   (the first to attach; when it leaves, the next oldest takes over and is
//!   told so by an INFO frame). Keystrokes of the others are dropped.
//! - A console sends its window size (RESIZE). The guest's serial line has no
//!   channel to carry it (no TIOCSWINSZ over a UART), so the typer's size is
//!   only stored, logged and shown by `colinux-console --list`; run
//!   `stty cols C rows R` in the guest to match it.
//! - The guest's VGA text screen: a console that asks (VIEW 1) gets a SCREEN
//!   frame whenever the screen changed, checked every [`SCREEN_TICK`]; a
//!   SNAPSHOT connection gets one and is closed. The typer's KEYS go to the
//!   keyboard as its DATA goes to the serial line.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use colinux_devices::legacy::vga::TextScreen;

use super::protocol::{self, Info};

/// Bytes of guest output kept for consoles that attach late.
pub const RING: usize = 128 * 1024;
/// Bytes a console may fall behind before it is disconnected.
pub const BACKLOG: usize = 1024 * 1024;
/// Largest DATA frame the server sends.
const CHUNK: usize = 32 * 1024;
/// How often a watched screen is compared with what was last sent.
pub const SCREEN_TICK: Duration = Duration::from_millis(40);

/// Where keystrokes go: takes what it can, returns how many bytes it took
/// (the UART FIFO may be full; the rest is offered again).
pub type InputSink = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// What the guest's screen shows now.
pub type ScreenSource = Arc<dyn Fn() -> TextScreen + Send + Sync>;

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    closed: bool,
}

/// One attached console's outgoing side.
struct ClientOut {
    q: Mutex<Queue>,
    cv: Condvar,
    stream: UnixStream,
    backlog: usize,
}

impl ClientOut {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; false (and the client closed) when it is too far behind.
    fn push(&self, frame: &[u8]) -> bool {
        let mut q = self.lock();
        if q.closed {
            return false;
        }
        if q.bytes.len() + frame.len() > self.backlog {
            q.closed = true;
            drop(q);
            self.close();
            return false;
        }
        q.bytes.extend_from_slice(frame);
        drop(q);
        self.cv.notify_one();
        true
    }

    fn close(&self) {
        self.lock().closed = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.cv.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

struct Client {
    id: u64,
    out: Arc<ClientOut>,
}

#[derive(Default)]
struct State {
    ring: VecDeque<u8>,
    clients: Vec<Client>,
    window: Option<(u16, u16)>,
    next_id: u64,
}

struct Shared {
    state: Mutex<State>,
    input: Mutex<Option<InputSink>>,
    keys: Mutex<Option<InputSink>>,
    screen: Mutex<Option<ScreenSource>>,
    ident: Info,
    ring_cap: usize,
    backlog: usize,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, st: &State, typer: bool) -> Info {
        Info {
            consoles: st.clients.len(),
            window: st.window,
            typer,
            ..self.ident.clone()
        }
    }

    fn info_frame(&self, st: &State, typer: bool) -> Vec<u8> {
        let json = serde_json::to_vec(&self.info(st, typer)).unwrap_or_default();
        protocol::encode(protocol::INFO, &json)
    }

    fn output(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut st = self.lock();
        st.ring.extend(bytes);
        let over = st.ring.len().saturating_sub(self.ring_cap);
        st.ring.drain(..over);
        if st.clients.is_empty() {
            return;
        }
        let frames: Vec<Vec<u8>> = bytes
            .chunks(CHUNK)
            .map(|c| protocol::encode(protocol::DATA, c))
            .collect();
        let mut dropped = Vec::new();
        for c in &st.clients {
            if !frames.iter().all(|f| c.out.push(f)) {
                dropped.push(c.id);
            }
        }
        for id in dropped {
            tracing::warn!(console = id, "a console fell behind; disconnected it");
            self.remove(&mut st, id);
        }
    }

    /// Removes a client; tells the next oldest it types now.
    fn remove(&self, st: &mut State, id: u64) {
        let Some(i) = st.clients.iter().position(|c| c.id == id) else {
            return;
        };
        let c = st.clients.remove(i);
        c.out.close();
        if i == 0 {
            if let Some(next) = st.clients.first() {
                let f = self.info_frame(st, true);
                next.out.push(&f);
            }
        }
    }

    fn is_typer(&self, id: u64) -> bool {
        self.lock().clients.first().is_some_and(|c| c.id == id)
    }

    fn screen_now(&self) -> Option<TextScreen> {
        let source = self
            .screen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        source.map(|f| f())
    }

    /// Hands `bytes` to `sink` (the serial line or the keyboard), waiting
    /// while it is full, until taken or the console or server goes.
    fn deliver(&self, sink: &Mutex<Option<InputSink>>, out: &ClientOut, mut bytes: &[u8]) {
        let sink = sink.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(sink) = sink else { return };
        while !bytes.is_empty() && !out.is_closed() && !self.stop.load(Ordering::Relaxed) {
            let took = sink(bytes).min(bytes.len());
            bytes = &bytes[took..];
            if !bytes.is_empty() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// Serves one connection (on its own thread).
    fn serve(self: &Arc<Self>, stream: UnixStream) {
        let mut rd = stream;
        let _ = rd.set_read_timeout(Some(Duration::from_secs(5)));
        let first = match protocol::read_frame(&mut rd) {
            Ok(Some((k, _))) => k,
            _ => return,
        };
        let _ = rd.set_read_timeout(None);
        if first == protocol::QUERY {
            let f = self.info_frame(&self.lock(), false);
            let _ = rd.write_all(&f);
            return;
        }
        if first == protocol::SNAPSHOT {
            if let Some(s) = self.screen_now() {
                let _ = rd.write_all(&protocol::encode(
                    protocol::SCREEN,
                    &super::screen::encode(&s),
                ));
            }
            return;
        }
        if first != protocol::ATTACH {
            return;
        }
        let Ok(wr) = rd.try_clone() else { return };
        let out = Arc::new(ClientOut {
            q: Mutex::default(),
            cv: Condvar::new(),
            stream: wr,
            backlog: self.backlog,
        });
        let id = {
            let mut st = self.lock();
            let id = st.next_id;
            st.next_id += 1;
            let typer = st.clients.is_empty();
            st.clients.push(Client {
                id,
                out: out.clone(),
            });
            // INFO first (the role), then the replay, then live output.
            out.push(&self.info_frame(&st, typer));
            let replay: Vec<u8> = st.ring.iter().copied().collect();
            for c in replay.chunks(CHUNK) {
                out.push(&protocol::encode(protocol::DATA, c));
            }
            tracing::info!(
                console = id,
                consoles = st.clients.len(),
                typer,
                "console attached"
            );
            id
        };
        let writer = spawn_client_writer(out.clone());
        let watching = Arc::new(AtomicBool::new(false));
        let mut watcher = None;
        loop {
            match protocol::read_frame(&mut rd) {
                Ok(Some((protocol::DATA, bytes))) => {
                    if self.is_typer(id) {
                        self.deliver(&self.input, &out, &bytes);
                    }
                }
                Ok(Some((protocol::KEYS, bytes))) => {
                    if self.is_typer(id) {
                        self.deliver(&self.keys, &out, &bytes);
                    }
                }
                Ok(Some((protocol::VIEW, p))) => {
                    let on = p.first() == Some(&1);
                    watching.store(on, Ordering::Relaxed);
                    if on && watcher.is_none() {
                        watcher = Some(spawn_screen_watcher(
                            self.clone(),
                            out.clone(),
                            watching.clone(),
                        ));
                    }
                }
                Ok(Some((protocol::RESIZE, p))) => {
                    if let Some((cols, rows)) = protocol::parse_resize(&p) {
                        let mut st = self.lock();
                        if st.clients.first().is_some_and(|c| c.id == id) {
                            st.window = Some((cols, rows));
                            tracing::info!(
                                cols,
                                rows,
                                "console window size (the serial line cannot tell the guest; \
                                 `stty cols {cols} rows {rows}` there)"
                            );
                        }
                    }
                }
                Ok(Some((protocol::DETACH, _))) | Ok(None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
            if out.is_closed() {
                break;
            }
        }
        let mut st = self.lock();
        self.remove(&mut st, id);
        tracing::info!(
            console = id,
            consoles = st.clients.len(),
            "console detached"
        );
        drop(st);
        let _ = writer.join();
        if let Some(w) = watcher {
            let _ = w.join();
        }
    }
}

/// Sends `out` the screen whenever it changed while `watching`, until the
/// console goes.
fn spawn_screen_watcher(
    shared: Arc<Shared>,
    out: Arc<ClientOut>,
    watching: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last: Option<Vec<u8>> = None;
        while !out.is_closed() && !shared.stop.load(Ordering::Relaxed) {
            if !watching.load(Ordering::Relaxed) {
                last = None;
            } else if let Some(s) = shared.screen_now() {
                let now = super::screen::encode(&s);
                if last.as_ref() != Some(&now) {
                    if !out.push(&protocol::encode(protocol::SCREEN, &now)) {
                        return;
                    }
                    last = Some(now);
                }
            }
            std::thread::sleep(SCREEN_TICK);
        }
    })
}

fn spawn_client_writer(out: Arc<ClientOut>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut stream) = out.stream.try_clone() else {
            return;
        };
        loop {
            let bytes = {
                let mut q = out.lock();
                while q.bytes.is_empty() && !q.closed {
                    q = out.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.closed {
                    return;
                }
                std::mem::take(&mut q.bytes)
            };
            if stream.write_all(&bytes).is_err() {
                out.close();
                return;
            }
        }
    })
}

/// A running console server; removes its socket and files when dropped.
pub struct ConsoleServer {
    shared: Arc<Shared>,
    socket: PathBuf,
    name_link: Option<PathBuf>,
    json: PathBuf,
    accept: Option<JoinHandle<()>>,
}

impl ConsoleServer {
    /// Serves `dir/<pid>.sock` (plus `dir/<name>.sock`, a symlink to it, and
    /// `dir/<pid>.json`) for the daemon described by `ident`.
    pub fn start(dir: &Path, ident: Info) -> io::Result<Self> {
        Self::start_with(dir, ident, RING, BACKLOG)
    }

    /// [`ConsoleServer::start`] with explicit ring and per-console backlog sizes.
    pub fn start_with(dir: &Path, ident: Info, ring: usize, backlog: usize) -> io::Result<Self> {
        let socket = dir.join(format!("{}.sock", ident.pid));
        let json = dir.join(format!("{}.json", ident.pid));
        let name_link = match &ident.name {
            Some(n) => Some(claim_name(dir, n, ident.pid)?),
            None => None,
        };
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        if let Some(link) = &name_link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(format!("{}.sock", ident.pid), link)?;
        }
        std::fs::write(&json, serde_json::to_vec(&ident).unwrap_or_default())?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            input: Mutex::new(None),
            keys: Mutex::new(None),
            screen: Mutex::new(None),
            ident,
            ring_cap: ring.max(1),
            backlog: backlog.max(ring + 4096),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("console-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(c) = conn {
                        let s = s.clone();
                        std::thread::spawn(move || s.serve(c));
                    }
                }
            })?;
        Ok(Self {
            shared,
            socket,
            name_link,
            json,
            accept: Some(accept),
        })
    }

    /// Feeds guest output (never blocks on a console).
    pub fn output(&self, bytes: &[u8]) {
        self.shared.output(bytes);
    }

    /// A function feeding guest output into this server (for the UART's writer).
    pub fn tap(&self) -> impl Fn(&[u8]) + Send + Sync + 'static {
        let s = self.shared.clone();
        move |b: &[u8]| s.output(b)
    }

    /// Where the typer's keystrokes go (`None`: dropped).
    pub fn set_input(&self, sink: Option<InputSink>) {
        *self.shared.input.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// Where the typer's key presses go (`None`: dropped).
    pub fn set_keys(&self, sink: Option<InputSink>) {
        *self.shared.keys.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// Where the screen is read (`None`: no screen to show).
    pub fn set_screen(&self, source: Option<ScreenSource>) {
        *self.shared.screen.lock().unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Consoles attached now.
    pub fn consoles(&self) -> usize {
        self.shared.lock().clients.len()
    }

    /// The typer's last window size (cols, rows).
    pub fn window(&self) -> Option<(u16, u16)> {
        self.shared.lock().window
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.socket);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.json);
        if let Some(link) = &self.name_link {
            if super::link_pid(link) == Some(self.shared.ident.pid) {
                let _ = std::fs::remove_file(link);
            }
        }
        let mut st = self.shared.lock();
        for c in st.clients.drain(..) {
            c.out.close();
        }
    }
}

/// Checks `NAME` is usable and not taken by a live daemon; gives its link path.
fn claim_name(dir: &Path, name: &str, pid: u32) -> io::Result<PathBuf> {
    super::check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let link = dir.join(format!("{name}.sock"));
    if let Some(other) = super::link_pid(&link) {
        if other != pid && super::pid_alive(other) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("the console name `{name}` is used by the running daemon pid {other}"),
            ));
        }
    }
    Ok(link)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
