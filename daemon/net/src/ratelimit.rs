//! Rate limiting for log lines the guest can trigger at will.
//!
//! A guest that rings a doorbell with a bogus ring, pokes an unknown port or
//! writes garbage to a register can do so millions of times a second; a log
//! line per event would flood the host's journal and cost the daemon its time.
//! Every such line goes through [`guest_log!`](crate::guest_log): each call site
//! logs its first [`BURST`] lines per [`INTERVAL`], counts the rest, and the
//! first line it logs in a later interval carries the count (`suppressed = N`).
//!
//! It lives in this crate because it is the lowest one the guest-facing code
//! shares: the network backends use it here, and `colinux_devices` and the
//! daemon reach it as `colinux_devices::ratelimit` and `colinux_devices::guest_log!`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines one call site logs per interval before it suppresses.
pub const BURST: u32 = 5;
/// Length of one rate-limiting interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// The budget of one call site: at most `burst` lines per `interval`.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    interval: Duration,
    window: Mutex<Window>,
    total_suppressed: AtomicU64,
}

impl RateLimit {
    /// A limit of `burst` lines per `interval` (usable in a `static`).
    pub const fn new(burst: u32, interval: Duration) -> Self {
        Self {
            burst,
            interval,
            window: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
            total_suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log one more line now: `Some(n)` to log it, `n` lines having
    /// been suppressed since the last one logged; `None` to drop it (counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`RateLimit::check`] at a given time (for tests).
    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let expired = w
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= self.interval);
        if expired {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < self.burst {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            self.total_suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Lines this call site has suppressed since it was created.
    pub fn total_suppressed(&self) -> u64 {
        self.total_suppressed.load(Ordering::Relaxed)
    }
}

/// Logs a line the guest can trigger at will, through a [`RateLimit`] of its
/// own call site ([`BURST`] lines per [`INTERVAL`](ratelimit::INTERVAL)).
/// Takes a `tracing` level macro name, then what that macro takes:
/// `guest_log!(warn, device = %name, "queue {q} refused")`.
#[macro_export]
macro_rules! guest_log {
    ($level:ident, target: $target:expr, $($arg:tt)+) => {{
        if ::tracing::enabled!(target: $target, $crate::__guest_log_level!($level)) {
            static LIMIT: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new(
                $crate::ratelimit::BURST,
                $crate::ratelimit::INTERVAL,
            );
            match LIMIT.check() {
                Some(0) => ::tracing::$level!(target: $target, $($arg)+),
                Some(suppressed) => ::tracing::$level!(target: $target, suppressed, $($arg)+),
                None => {}
            }
        }
    }};
    ($level:ident, $($arg:tt)+) => {{
        if ::tracing::enabled!($crate::__guest_log_level!($level)) {
            static LIMIT: $crate::ratelimit::RateLimit =
            $crate::ratelimit::RateLimit::new($crate::ratelimit::BURST, $crate::ratelimit::INTERVAL);
            match LIMIT.check() {
                Some(0) => ::tracing::$level!($($arg)+),
                Some(suppressed) => ::tracing::$level!(suppressed, $($arg)+),
                None => {}
            }
        }
    }};
}

/// The `tracing::Level` of a level macro name (for [`guest_log!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __guest_log_level {
    (trace) => {
        ::tracing::Level::TRACE
    };
    (debug) => {
        ::tracing::Level::DEBUG
    };
    (info) => {
        ::tracing::Level::INFO
    };
    (warn) => {
        ::tracing::Level::WARN
    };
    (error) => {
        ::tracing::Level::ERROR
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_suppresses_then_reports_the_count() {
        let l = RateLimit::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let verdicts: Vec<_> = (0..10).map(|_| l.check_at(t0)).collect();
        assert_eq!(verdicts[..3], [Some(0), Some(0), Some(0)]);
        assert!(verdicts[3..].iter().all(Option::is_none));
        assert_eq!(l.total_suppressed(), 7);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            l.check_at(t1),
            Some(7),
            "the next interval reports the count"
        );
        assert_eq!(l.check_at(t1), Some(0));
    }
}
