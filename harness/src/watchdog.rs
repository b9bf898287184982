//! Watchdogs over one host-VM run, well inside the scenario's own deadline:
//! one per phase (the host VM's boot, each inner boot, the work between and
//! after boots), and one on the host VM's heartbeat — its init writes a line
//! to a second serial port every few seconds, which QEMU keeps in a file; a
//! file that stops growing means the host VM's user space stopped running.
//!
//! A watchdog that fires does not judge by itself: the runner then asks the
//! host VM's QEMU for its state (see [`crate::host_state`]).
//!
//! Before that, a heartbeat [`NUDGE_AFTER`] late earns the host VM a nudge
//! (see [`Watchdog::nudge_due`]): with one vCPU under TCG, the host VM was
//! seen idle with interrupts enabled for ~88 s, no timer interrupt coming,
//! until the watchdog's questions (ending in a key press) woke it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the host init beats (vm-images/host/init).
pub const BEAT_EVERY: Duration = Duration::from_secs(5);

/// A heartbeat this long after the last one (three beats missed) earns the
/// host VM a nudge: an interrupt that ends an idle CPU's wait.
pub const NUDGE_AFTER: Duration = Duration::from_secs(20);

/// The least time between two nudges of one silence.
pub const NUDGE_EVERY: Duration = Duration::from_secs(20);

/// The bounds of one run.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// From QEMU's start to the host init's READY.
    pub host_boot: Duration,
    /// Any later phase: one inner boot (START to EXIT), or the host work
    /// before, between and after boots (to the next START, or DONE).
    pub phase: Duration,
    /// Longest gap between two heartbeats once the first has come.
    pub silence: Duration,
}

impl Bounds {
    /// Bounds for a scenario whose inner boots may take `boot_timeout`
    /// (enforced inside the host VM by `timeout -s KILL`): a phase gets that
    /// plus a margin for the host VM to notice and say so.
    pub fn for_boot_timeout(boot_timeout: Duration) -> Self {
        Self {
            host_boot: Duration::from_secs(180),
            phase: boot_timeout + Duration::from_secs(90),
            silence: Duration::from_secs(90),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// QEMU started, the host init's READY not yet seen.
    HostBoot,
    /// Host work before the first inner boot (scenario setup).
    Setup,
    /// Inner boot n running.
    Boot(u32),
    /// Inner boot n ended; host work until the next boot or DONE.
    After(u32),
}

impl Phase {
    fn describe(&self) -> String {
        match self {
            Phase::HostBoot => "the host VM's boot (to its init's READY)".into(),
            Phase::Setup => "the host's setup before the first inner boot".into(),
            Phase::Boot(n) => format!("inner boot {n} (START to EXIT)"),
            Phase::After(n) => format!("the host's work after inner boot {n}"),
        }
    }
}

/// What the host VM's heartbeat said when a watchdog fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beats {
    /// Beating: the host VM's user space runs.
    Alive,
    /// It beat, then stopped for longer than [`Bounds::silence`].
    Stopped,
    /// No beat yet (the host VM never reached its init, or an old initramfs).
    NeverSeen,
}

/// Why a watchdog fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// What was late, in words.
    pub what: String,
    /// The heartbeat at that moment.
    pub beats: Beats,
}

/// The watchdogs of one run.
#[derive(Debug)]
pub struct Watchdog {
    bounds: Bounds,
    phase: Phase,
    phase_since: Instant,
    beat_file: PathBuf,
    beat_len: u64,
    last_beat: Option<Instant>,
    last_nudge: Option<Instant>,
}

impl Watchdog {
    /// Starts watching a host VM started now, whose heartbeats land in `beat_file`.
    pub fn new(bounds: Bounds, beat_file: PathBuf, now: Instant) -> Self {
        Self {
            bounds,
            phase: Phase::HostBoot,
            phase_since: now,
            beat_file,
            beat_len: 0,
            last_beat: None,
            last_nudge: None,
        }
    }

    /// Whether the host VM is due a nudge: its heartbeat came once, and is
    /// now [`NUDGE_AFTER`] late, and no nudge went in the last
    /// [`NUDGE_EVERY`]. Returns how long the heartbeat has been silent and
    /// counts the nudge as sent. Call after [`Watchdog::poll`], which reads
    /// the heartbeat.
    pub fn nudge_due(&mut self, now: Instant) -> Option<Duration> {
        let silent = now.duration_since(self.last_beat?);
        let recent = self
            .last_nudge
            .is_some_and(|t| now.duration_since(t) < NUDGE_EVERY);
        if silent < NUDGE_AFTER || recent {
            return None;
        }
        self.last_nudge = Some(now);
        Some(silent)
    }

    /// The phase the run is in.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Follows the host console: READY and the BOOT START/EXIT marks move the phase.
    pub fn on_line(&mut self, line: &str, now: Instant) {
        let next = if line.contains("COLINUX-HOST READY") {
            Some(Phase::Setup)
        } else if let Some((n, kind, _)) = crate::checks::parse_boot_mark(line) {
            match kind {
                "START" => Some(Phase::Boot(n)),
                "EXIT" => Some(Phase::After(n)),
                _ => None,
            }
        } else {
            None
        };
        if let Some(p) = next {
            self.phase = p;
            self.phase_since = now;
        }
    }

    /// Reads the heartbeat file and checks every bound; the first one passed.
    pub fn poll(&mut self, now: Instant) -> Option<Expiry> {
        let len = std::fs::metadata(&self.beat_file).map_or(0, |m| m.len());
        if len > self.beat_len {
            self.beat_len = len;
            self.last_beat = Some(now);
        }
        let beats = match self.last_beat {
            None => Beats::NeverSeen,
            Some(t) if now.duration_since(t) >= self.bounds.silence => Beats::Stopped,
            Some(_) => Beats::Alive,
        };
        if beats == Beats::Stopped {
            return Some(Expiry {
                what: format!(
                    "the host VM's heartbeat stopped {}s ago, during {}",
                    self.last_beat
                        .map_or(0, |t| now.duration_since(t).as_secs()),
                    self.phase.describe()
                ),
                beats,
            });
        }
        let bound = match self.phase {
            Phase::HostBoot => self.bounds.host_boot,
            _ => self.bounds.phase,
        };
        let spent = now.duration_since(self.phase_since);
        (spent >= bound).then(|| Expiry {
            what: format!(
                "{} took more than {}s{}",
                self.phase.describe(),
                bound.as_secs(),
                if self.last_beat.is_some() {
                    " (the host VM's heartbeat goes on)"
                } else {
                    " (no heartbeat seen from the host VM)"
                }
            ),
            beats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            host_boot: Duration::from_secs(100),
            phase: Duration::from_secs(50),
            silence: Duration::from_secs(20),
        }
    }

    fn beat_file(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("wd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn beat(p: &PathBuf) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        writeln!(f, "beat").unwrap();
    }

    #[test]
    fn phases_follow_the_console_and_each_has_its_bound() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let p = beat_file("phases");
        let mut w = Watchdog::new(bounds(), p.clone(), t0);
        assert_eq!(w.poll(s(99)), None);
        let e = w.poll(s(100)).unwrap();
        assert!(e.what.contains("host VM's boot"), "{}", e.what);
        assert!(e.what.contains("no heartbeat"), "{}", e.what);
        w.on_line("COLINUX-HOST READY kvm=yes uptime=4.1", s(10));
        assert_eq!(w.phase(), &Phase::Setup);
        w.on_line("COLINUX-HOST BOOT 3 START 35.2 colinux", s(40));
        assert_eq!(w.phase(), &Phase::Boot(3));
        assert_eq!(w.poll(s(89)), None);
        let e = w.poll(s(90)).unwrap();
        assert!(e.what.contains("inner boot 3"), "{}", e.what);
        assert_eq!(e.beats, Beats::NeverSeen);
        w.on_line("COLINUX-HOST BOOT 3 EXIT 0 80.0", s(85));
        assert_eq!(w.phase(), &Phase::After(3));
        assert_eq!(w.poll(s(134)), None);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_heartbeat_that_stops_fires_before_any_phase_bound() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let p = beat_file("silent");
        let mut w = Watchdog::new(bounds(), p.clone(), t0);
        w.on_line("COLINUX-HOST READY kvm=yes", s(5));
        beat(&p);
        assert_eq!(w.poll(s(6)), None);
        beat(&p);
        assert_eq!(w.poll(s(12)), None);
        w.on_line("COLINUX-HOST BOOT 1 START 12.0 colinux", s(12));
        // the file stops growing: silent from s(12)
        assert_eq!(w.poll(s(31)), None);
        let e = w.poll(s(32)).unwrap();
        assert_eq!(e.beats, Beats::Stopped);
        assert!(e.what.contains("heartbeat stopped 20s ago"), "{}", e.what);
        assert!(e.what.contains("inner boot 1"), "{}", e.what);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_late_heartbeat_earns_a_nudge_now_and_then() {
        let p = beat_file("nudge");
        let t0 = Instant::now();
        let mut w = Watchdog::new(bounds(), p.clone(), t0);
        assert_eq!(
            w.nudge_due(t0 + Duration::from_secs(60)),
            None,
            "no beat yet"
        );
        beat(&p);
        let _ = w.poll(t0);
        assert_eq!(w.nudge_due(t0 + Duration::from_secs(19)), None);
        assert_eq!(
            w.nudge_due(t0 + Duration::from_secs(21)),
            Some(Duration::from_secs(21))
        );
        assert_eq!(
            w.nudge_due(t0 + Duration::from_secs(30)),
            None,
            "just nudged"
        );
        assert_eq!(
            w.nudge_due(t0 + Duration::from_secs(41)),
            Some(Duration::from_secs(41))
        );
        // the heartbeat comes back: no nudge until it is late again
        beat(&p);
        let _ = w.poll(t0 + Duration::from_secs(45));
        assert_eq!(w.nudge_due(t0 + Duration::from_secs(62)), None);
        assert_eq!(
            w.nudge_due(t0 + Duration::from_secs(66)),
            Some(Duration::from_secs(21))
        );
    }

    #[test]
    fn no_heartbeat_file_means_no_silence_verdict() {
        // an old host initramfs without the beat: only the phase bounds apply
        let t0 = Instant::now();
        let p = beat_file("never");
        let mut w = Watchdog::new(bounds(), p, t0);
        w.on_line("COLINUX-HOST READY kvm=yes", t0);
        assert_eq!(w.poll(t0 + Duration::from_secs(49)), None);
        assert_eq!(
            w.poll(t0 + Duration::from_secs(50)).unwrap().beats,
            Beats::NeverSeen
        );
    }
}
