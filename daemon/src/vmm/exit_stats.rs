//! Where a vCPU's exits went (`--exit-stats`): counts and handling time by
//! kind and place, and exits over time, printed when the vCPU stops. A slow
//! boot is read against the guest's own timestamps: which port or MMIO page
//! it kept leaving the guest for, and in which part of the boot.
//!
//! Reading the clock costs a syscall where the host's clocksource is not the
//! TSC (the harness's TCG host VM), so only one exit in [`TIMED_EVERY`] is
//! timed; its handling time counts for all of them, and exits between two
//! clock readings fall in the slice of the last one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Exits are counted over time in slices this long.
pub const SLICE: Duration = Duration::from_millis(250);
/// How many places the report lists (the busiest first).
pub const LISTED: usize = 20;
/// One exit in this many is timed (see the module documentation).
pub const TIMED_EVERY: u64 = 16;

/// What an exit was and where, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExitKey {
    /// A port read.
    PortIn(u16),
    /// A port write.
    PortOut(u16),
    /// An MMIO read, by 4 KiB page.
    MmioRead(u64),
    /// An MMIO write, by 4 KiB page.
    MmioWrite(u64),
    /// HLT (the guest idles).
    Halt,
    /// `KVM_RUN` interrupted by a signal.
    Interrupted,
}

impl ExitKey {
    /// The key of an MMIO read at `addr`.
    pub fn mmio_read(addr: u64) -> Self {
        ExitKey::MmioRead(addr & !0xfff)
    }
    /// The key of an MMIO write at `addr`.
    pub fn mmio_write(addr: u64) -> Self {
        ExitKey::MmioWrite(addr & !0xfff)
    }
}

impl std::fmt::Display for ExitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKey::PortIn(p) => write!(f, "in  port {p:#06x}"),
            ExitKey::PortOut(p) => write!(f, "out port {p:#06x}"),
            ExitKey::MmioRead(a) => write!(f, "mmio read  page {a:#x}"),
            ExitKey::MmioWrite(a) => write!(f, "mmio write page {a:#x}"),
            ExitKey::Halt => write!(f, "hlt"),
            ExitKey::Interrupted => write!(f, "signal"),
        }
    }
}

/// One vCPU's exit counts (see the module documentation).
#[derive(Debug)]
pub struct ExitStats {
    started: Instant,
    by_key: HashMap<ExitKey, (u64, Duration)>,
    per_slice: Vec<u64>,
    /// Exits seen, timed or not.
    seen: u64,
    /// The slice of the last clock reading.
    slice: usize,
}

impl Default for ExitStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitStats {
    /// Empty counts; the run clock starts now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            by_key: HashMap::new(),
            per_slice: Vec::new(),
            seen: 0,
            slice: 0,
        }
    }

    /// Whether the exit about to be handled is one to time (call once per
    /// exit, before [`ExitStats::record`]).
    pub fn time_this_one(&mut self) -> bool {
        self.seen += 1;
        self.seen % TIMED_EVERY == 1
    }

    /// Counts one exit of kind `key`; `timed` is `(handling time, end)` for
    /// an exit [`ExitStats::time_this_one`] picked, and stands for
    /// [`TIMED_EVERY`] exits' handling.
    pub fn record(&mut self, key: ExitKey, timed: Option<(Duration, Instant)>) {
        let e = self.by_key.entry(key).or_default();
        e.0 += 1;
        if let Some((handled, now)) = timed {
            e.1 += handled * TIMED_EVERY as u32;
            self.slice = (now.saturating_duration_since(self.started).as_millis()
                / SLICE.as_millis()) as usize;
        }
        if self.per_slice.len() <= self.slice {
            self.per_slice.resize(self.slice + 1, 0);
        }
        self.per_slice[self.slice] += 1;
    }

    /// Total exits counted.
    pub fn total(&self) -> u64 {
        self.by_key.values().map(|(n, _)| n).sum()
    }

    /// The counts by place, busiest first (ties in key order).
    pub fn busiest(&self) -> Vec<(ExitKey, u64, Duration)> {
        let mut v: Vec<_> = self.by_key.iter().map(|(k, (n, t))| (*k, *n, *t)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The report printed when the vCPU stops: totals, the [`LISTED`] busiest
    /// places, and exits per [`SLICE`] of run time.
    pub fn report(&self, vcpu: u32) -> String {
        let handled: Duration = self.by_key.values().map(|(_, t)| *t).sum();
        let mut s = format!(
            "colinux-daemon: exit stats vCPU {vcpu}: {} exits in {} ms of run time, ~{} ms of it in the daemon's handlers (1 in {TIMED_EVERY} timed)\n",
            self.total(),
            self.started.elapsed().as_millis(),
            handled.as_millis()
        );
        for (k, n, t) in self.busiest().into_iter().take(LISTED) {
            let _ = writeln!(
                s,
                "colinux-daemon: exit stats vCPU {vcpu}:   {k:<28} {n:>9} exits {:>9.3} ms",
                t.as_secs_f64() * 1e3
            );
        }
        let slices: Vec<String> = self.per_slice.iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "colinux-daemon: exit stats vCPU {vcpu}: exits per {} ms: {}",
            SLICE.as_millis(),
            slices.join(" ")
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_place_busiest_first_and_over_time() {
        let mut st = ExitStats::new();
        let t0 = st.started;
        let us = Duration::from_micros;
        let exit = |st: &mut ExitStats, key, at| {
            let timed = st.time_this_one().then_some((us(10), at));
            st.record(key, timed);
        };
        for _ in 0..3 {
            exit(&mut st, ExitKey::PortOut(0x3f8), t0);
        }
        for _ in 3..TIMED_EVERY {
            exit(&mut st, ExitKey::mmio_write(0xfebf_1004), t0 + SLICE * 2);
        }
        // The 17th exit is timed again: it (and those after it) move on.
        exit(&mut st, ExitKey::mmio_write(0xfebf_1ffc), t0 + SLICE * 2);
        exit(&mut st, ExitKey::Halt, t0 + SLICE * 9);
        assert_eq!(st.total(), TIMED_EVERY + 2);
        let b = st.busiest();
        assert_eq!(b[0].0, ExitKey::MmioWrite(0xfebf_1000));
        assert_eq!(b[0].1, TIMED_EVERY - 3 + 1);
        let one_timed = us(10) * TIMED_EVERY as u32;
        assert_eq!(b[0].2, one_timed, "the 17th exit's time stands for 16");
        assert_eq!(b[1], (ExitKey::PortOut(0x3f8), 3, one_timed));
        assert_eq!(b[2], (ExitKey::Halt, 1, Duration::ZERO));
        let r = st.report(0);
        assert!(r.contains("18 exits"), "{r}");
        assert!(r.contains("out port 0x03f8"), "{r}");
        assert!(r.contains("exits per 250 ms: 16 0 2\n"), "{r}");
    }
}
