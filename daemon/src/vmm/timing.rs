//! Wall-clock phases of start-up, logged as one line so that a slow boot shows
//! where the monitor's own time went (before the guest's clock starts).

use std::fmt;
use std::time::Instant;

/// Consecutive named phases, each measured from the end of the previous one.
#[derive(Debug)]
pub struct Phases {
    start: Instant,
    last: Instant,
    done: Vec<(&'static str, u64)>,
}

impl Default for Phases {
    fn default() -> Self {
        Self::new()
    }
}

impl Phases {
    /// Starts timing now.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            done: Vec::new(),
        }
    }

    /// Ends the phase `name` (it ran since the previous mark).
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done
            .push((name, now.duration_since(self.last).as_millis() as u64));
        self.last = now;
    }

    /// Milliseconds since [`Phases::new`].
    pub fn total_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// How long ago this process started (exec), in ms, from `/proc/self/stat`
/// and `/proc/uptime` (clock-tick resolution); `None` off Linux or if unreadable.
pub fn process_age_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 22 (starttime) counts from the field after the `(comm)` one.
    let after_comm = stat.rsplit_once(')')?.1;
    let start_ticks: f64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let age = uptime - start_ticks / hz as f64;
    Some((age.max(0.0) * 1000.0) as u64)
}

/// `name=12ms name=3ms ...`
impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, ms)) in self.done.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={ms}ms")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_in_order() {
        let mut p = Phases::new();
        p.mark("a");
        p.mark("b");
        let s = p.to_string();
        assert!(s.starts_with("a=") && s.contains(" b="), "{s}");
        assert!(p.total_ms() < 10_000);
    }

    #[test]
    fn this_process_has_an_age() {
        assert!(process_age_ms().is_some_and(|ms| ms < 3_600_000));
    }
}
