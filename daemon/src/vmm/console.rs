//! The daemon's terminal as the guest's serial console: output to stdout (flushed
//! at line ends and by a ticker), input from stdin, with the terminal in raw mode
//! while the guest runs and restored on every exit path (drop, signal, panic).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Output of the serial console: buffered, flushed on newline and by [`ticker`].
#[derive(Clone)]
pub struct ConsoleOut {
    buf: Arc<Mutex<Vec<u8>>>,
    started: Instant,
    first: Arc<std::sync::Once>,
}

impl Default for ConsoleOut {
    fn default() -> Self {
        Self {
            buf: Arc::default(),
            started: Instant::now(),
            first: Arc::new(std::sync::Once::new()),
        }
    }
}

impl ConsoleOut {
    /// Writes what is buffered to stdout.
    pub fn flush_now(&self) {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if !b.is_empty() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(&b);
            let _ = out.flush();
            b.clear();
        }
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.first.call_once(|| {
            tracing::debug!(
                ms = self.started.elapsed().as_millis() as u64,
                "first guest console output"
            );
        });
        let flush = {
            let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            b.extend_from_slice(data);
            data.contains(&b'\n') || b.len() >= 4096
        };
        if flush {
            self.flush_now();
        }
        Ok(data.len())
    }

    /// Does nothing: the UART flushes after every byte, which would cost a
    /// system call per character; lines and the ticker flush instead.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Flushes `out` every 20 ms until `stop` is set (prompts without a newline).
pub fn ticker(out: ConsoleOut, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            out.flush_now();
        }
        out.flush_now();
    })
}

static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts stdin in raw mode while alive (only when it is a terminal).
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    /// Enters raw mode if stdin is a terminal.
    pub fn enter() -> Self {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return Self { active: false };
        }
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal; `t` is a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Self { active: false };
        }
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        let mut raw = t;
        // SAFETY: cfmakeraw edits the struct in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output post-processing so the host terminal shows "\n" as a new line.
        raw.c_oflag |= libc::OPOST;
        // SAFETY: fd is a terminal and `raw` a valid termios.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) };
        Self { active: true }
    }
}

/// Restores the terminal saved by [`RawTerminal::enter`] (idempotent; safe to call
/// from a panic hook or before exiting).
pub fn restore_terminal() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        // SAFETY: restoring attributes previously read from this terminal.
        unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSANOW, &t) };
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            restore_terminal();
        }
    }
}

/// Reads stdin on a thread and hands bytes to `deliver`, which returns how many
/// it took (the UART FIFO may be full; the rest is retried). Ends at EOF or when
/// `stop` is set.
pub fn spawn_input<F>(mut deliver: F, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()>
where
    F: FnMut(&[u8]) -> usize + Send + 'static,
{
    std::thread::spawn(move || {
        let mut stdin = io::stdin();
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() && !stop.load(Ordering::Relaxed) {
                let took = deliver(rest);
                rest = &rest[took..];
                if !rest.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    })
}
