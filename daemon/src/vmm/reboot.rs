//! Reboot in place: the guest's `reboot` boots it again in the same daemon
//! (classic coLinux), unless it reboots too often — [`REBOOT_LIMIT`] reboots
//! within [`REBOOT_WINDOW`] are a loop, and the daemon stops instead of
//! spinning.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Reboots within [`REBOOT_WINDOW`] that count as a reboot loop.
pub const REBOOT_LIMIT: usize = 5;
/// The window the reboot loop guard looks back over.
pub const REBOOT_WINDOW: Duration = Duration::from_secs(60);

/// Counts recent reboots (pure: the caller gives the time).
#[derive(Debug, Clone)]
pub struct RebootGuard {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl Default for RebootGuard {
    fn default() -> Self {
        Self::new(REBOOT_LIMIT, REBOOT_WINDOW)
    }
}

impl RebootGuard {
    /// A guard that refuses the `limit`-th reboot within `window`.
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            recent: VecDeque::new(),
        }
    }

    /// Records a reboot at `now`. `Ok(n)`: boot again, `n` reboots in the
    /// window so far (this one included); `Err(n)`: a reboot loop.
    pub fn record(&mut self, now: Instant) -> Result<usize, usize> {
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        let n = self.recent.len();
        if n >= self.limit {
            Err(n)
        } else {
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_reboot_within_a_minute_is_a_loop() {
        let t0 = Instant::now();
        let mut g = RebootGuard::default();
        for i in 0..4u64 {
            assert_eq!(
                g.record(t0 + Duration::from_secs(i * 10)),
                Ok(i as usize + 1)
            );
        }
        assert_eq!(g.record(t0 + Duration::from_secs(50)), Err(5));
    }

    #[test]
    fn reboots_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut g = RebootGuard::default();
        for i in 0..4u64 {
            g.record(t0 + Duration::from_secs(i)).unwrap();
        }
        // 60 s after the first one: it has left the window.
        assert_eq!(g.record(t0 + Duration::from_secs(60)), Ok(4));
        // A slow but steady reboot cycle never trips the guard.
        let mut slow = RebootGuard::default();
        for i in 0..50u64 {
            assert!(slow.record(t0 + Duration::from_secs(i * 15)).is_ok(), "{i}");
        }
        let mut fast = RebootGuard::default();
        let r: Vec<_> = (0..5u64)
            .map(|i| fast.record(t0 + Duration::from_secs(i * 14)))
            .collect();
        assert_eq!(r.last(), Some(&Err(5)), "{r:?}");
    }

    #[test]
    fn limit_is_configurable() {
        let t0 = Instant::now();
        let mut g = RebootGuard::new(2, Duration::from_secs(1));
        assert_eq!(g.record(t0), Ok(1));
        assert_eq!(g.record(t0 + Duration::from_millis(500)), Err(2));
    }
}
