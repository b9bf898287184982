//! The daemon's terminal as the guest's serial console: output to stdout,
//! input from stdin (the terminal in raw mode meanwhile: [`super::terminal`]).
//!
//! Output never blocks the guest: the UART (on a vCPU thread) only appends to a
//! bounded buffer, and a writer thread ([`ticker`]) moves it to stdout, flushing
//! at line ends and every 20 ms. When stdout stalls (a terminal paused with
//! ^S, a pipe nobody reads) the buffer keeps the newest [`CONSOLE_BUFFER`]
//! bytes and drops the oldest, counted and reported in a rate-limited warning.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes of guest console output held while the writer is behind.
pub const CONSOLE_BUFFER: usize = 256 * 1024;
/// Longest a partial line (a prompt) waits before the writer sends it.
const TICK: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Pending {
    bytes: VecDeque<u8>,
    /// Bytes dropped since the writer last reported.
    dropped: u64,
    /// A line end or a full chunk is waiting: wake the writer now.
    urgent: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    capacity: usize,
    dropped_total: std::sync::atomic::AtomicU64,
}

/// A non-blocking copy of the console output (the console server's feed).
pub type OutputTap = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Output of the serial console: a bounded buffer the UART writes into without
/// ever blocking, drained to stdout by [`ticker`].
#[derive(Clone)]
pub struct ConsoleOut {
    shared: Arc<Shared>,
    started: Instant,
    first: Arc<std::sync::Once>,
    /// A copy of every byte for the console server (set once, never blocks).
    tap: Arc<std::sync::OnceLock<OutputTap>>,
}

impl Default for ConsoleOut {
    fn default() -> Self {
        Self::with_capacity(CONSOLE_BUFFER)
    }
}

impl ConsoleOut {
    /// A console output holding at most `capacity` bytes while the writer is behind.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                pending: Mutex::default(),
                wake: Condvar::new(),
                capacity: capacity.max(1),
                dropped_total: Default::default(),
            }),
            started: Instant::now(),
            first: Arc::new(std::sync::Once::new()),
            tap: Arc::default(),
        }
    }

    /// Copies every later byte of output to `tap` as well (the console
    /// server's non-blocking feed); only the first call counts.
    pub fn set_tap(&self, tap: OutputTap) {
        let _ = self.tap.set(tap);
    }

    /// Bytes dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped_total.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Takes what is buffered (waiting up to `wait` for a line end or a full
    /// chunk first), with the count of bytes dropped since the last take.
    fn take(&self, wait: Duration) -> (Vec<u8>, u64) {
        let mut p = self.lock();
        if !p.urgent && !wait.is_zero() {
            p = self
                .shared
                .wake
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.urgent = false;
        let bytes = p.bytes.drain(..).collect();
        (bytes, std::mem::take(&mut p.dropped))
    }

    /// Writes what is buffered to `sink` (on the caller's thread).
    fn drain_to(&self, sink: &mut dyn Write, wait: Duration) {
        let (bytes, dropped) = self.take(wait);
        if dropped > 0 {
            colinux_devices::guest_log!(
                warn,
                dropped,
                "guest console output dropped: the terminal does not keep up"
            );
        }
        if !bytes.is_empty() {
            let _ = sink.write_all(&bytes);
            let _ = sink.flush();
        }
    }

    /// Writes what is buffered to stdout now (at exit, after the writer ended).
    pub fn flush_now(&self) {
        self.drain_to(&mut io::stdout().lock(), Duration::ZERO);
    }
}

impl Write for ConsoleOut {
    /// Appends to the buffer, dropping the oldest bytes beyond its capacity;
    /// never blocks on the terminal.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.first.call_once(|| {
            tracing::debug!(
                ms = self.started.elapsed().as_millis() as u64,
                "first guest console output"
            );
        });
        if let Some(tap) = self.tap.get() {
            tap(data);
        }
        let wake = {
            let mut p = self.lock();
            p.bytes.extend(data);
            let over = p.bytes.len().saturating_sub(self.shared.capacity);
            if over > 0 {
                p.bytes.drain(..over);
                p.dropped += over as u64;
                self.shared
                    .dropped_total
                    .fetch_add(over as u64, Ordering::Relaxed);
            }
            let wake = !p.urgent && (data.contains(&b'\n') || p.bytes.len() >= 4096);
            p.urgent |= wake;
            wake
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(data.len())
    }

    /// Does nothing: the UART flushes after every byte; the writer thread
    /// sends lines as they end and partial lines every 20 ms.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The console writer: drains `out` to `sink` at line ends and every 20 ms
/// until `stop` is set (then once more). Blocking in `sink` stalls only this
/// thread; the guest's output meanwhile stays bounded in `out`.
pub fn spawn_writer<W: Write + Send + 'static>(
    out: ConsoleOut,
    mut sink: W,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                out.drain_to(&mut sink, TICK);
            }
            out.drain_to(&mut sink, Duration::ZERO);
        })
        .expect("spawning the console writer thread")
}

/// [`spawn_writer`] to stdout.
pub fn ticker(out: ConsoleOut, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    spawn_writer(out, io::stdout(), stop)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that blocks until the test lets it go.
    struct Stuck(Mutex<mpsc::Receiver<()>>);
    impl Write for Stuck {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_bounds_the_buffer_and_counts_what_it_drops() {
        let out = ConsoleOut::with_capacity(1024);
        let stop = Arc::new(AtomicBool::new(false));
        let (release, rx) = mpsc::channel();
        let writer = spawn_writer(out.clone(), Stuck(Mutex::new(rx)), stop.clone());
        let mut w = out.clone();
        let t = Instant::now();
        for _ in 0..10_000 {
            w.write_all(b"0123456789abcde\n").unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "writes blocked");
        assert!(out.lock().bytes.len() <= 1024);
        assert!(out.dropped() >= 160_000 - 2 * 1024, "{}", out.dropped());
        stop.store(true, Ordering::Relaxed);
        drop(release);
        writer.join().unwrap();
    }
}
