//! Running one scenario under one inner monitor in a fresh host VM, and
//! judging it: [`work`] makes the work disk, [`host_vm`] boots the host VM
//! and follows its console, [`judge`] reads the results back and checks them.

mod host_vm;
mod judge;
mod work;

use crate::images::Images;
use crate::paths;
use crate::qemu::Accel;
use crate::scenario::Scenario;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use host_vm::{host_vm_append, host_vm_cpus};

/// The host VM's console log in a run's directory.
const HOST_CONSOLE_LOG: &str = "host-console.log";

/// The inner monitor that boots the guest inside the host VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Monitor {
    /// qemu-system-x86_64 -accel kvm (the reference).
    Qemu,
    /// colinux-daemon @colinux.conf.
    Colinux,
}

impl Monitor {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Qemu => "qemu",
            Monitor::Colinux => "colinux",
        }
    }
}

/// pass | fail | unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// Something did not; see the log.
    Fail,
    /// The monitor lacks a capability the scenario needs.
    Unsupported,
}

/// Host-VM clock marks of one inner boot.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BootMarks {
    /// Monitor started (host VM uptime, s).
    pub start: Option<f64>,
    /// Guest agent READY seen (host VM uptime, s).
    pub ready: Option<f64>,
    /// Monitor exited (host VM uptime, s).
    pub exit: Option<f64>,
}

impl BootMarks {
    /// Start-to-agent time, seconds.
    pub fn boot_to_init(&self) -> Option<f64> {
        Some(self.ready? - self.start?)
    }
}

/// The result of one scenario run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// Monitor.
    pub monitor: Monitor,
    /// Verdict.
    pub result: Verdict,
    /// Wall time.
    pub seconds: f64,
    /// The summary log explaining the verdict.
    pub log: PathBuf,
    /// Why it failed / is unsupported (empty on pass).
    #[serde(skip)]
    pub reasons: Vec<String>,
    /// Per-boot timing marks.
    #[serde(skip)]
    pub boots: Vec<BootMarks>,
    /// Runs it took: more than 1 when earlier ones failed on a fault of the nested setup (see [`run_scenario`]).
    pub attempts: u32,
    /// The nested-setup faults that made earlier attempts not count (their
    /// logs are kept in `<monitor>.attemptN/`).
    pub retried_because: Option<String>,
    /// A watchdog fired and the host VM's state, asked of its QEMU, showed a
    /// fault of the nested setup (see [`crate::host_state`]).
    #[serde(skip)]
    pub nested_fault: Option<String>,
    /// Each nudge the host VM got when its heartbeat was late (see
    /// [`crate::watchdog::Watchdog::nudge_due`]): when, and what it did.
    pub nudges: Vec<String>,
}

impl Outcome {
    /// A run of `name` under `monitor` not yet judged: failed until shown
    /// otherwise, first attempt, its summary at `log`.
    pub fn new(name: &str, monitor: Monitor, log: PathBuf) -> Self {
        Outcome {
            name: name.to_string(),
            monitor,
            result: Verdict::Fail,
            seconds: 0.0,
            log,
            reasons: vec![],
            boots: vec![],
            attempts: 1,
            retried_because: None,
            nested_fault: None,
            nudges: vec![],
        }
    }
}

/// What a run needs besides the scenario.
pub struct RunContext<'a> {
    /// Built images.
    pub images: &'a Images,
    /// Host VM accelerator.
    pub accel: Accel,
    /// Capabilities of the packed daemon.
    pub capabilities: Vec<String>,
    /// Print console lines live.
    pub verbose: bool,
}

/// Extra attempts one ci-boot process may spend on a *third* attempt (see
/// [`run_scenario`]); bounds the run's time when the host VM is having a bad day.
pub const THIRD_ATTEMPT_BUDGET: u32 = 3;

static THIRD_ATTEMPTS_SPENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// What a failed attempt's evidence says about running it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The host VM itself broke down: its kernel reported a fault in a
    /// monitor's KVM path (a panic, a stack overflow, a lockup), it reset, or
    /// a watchdog found it held by nested virtualisation. Nothing under test
    /// can do that to the host VM: retried up to twice (see [`may_run_again`]).
    HostVm(String),
    /// The inner guest reset unasked in mid-work: retried once under
    /// colinux-daemon, up to twice under the reference QEMU.
    InnerGuest(String),
}

impl Fault {
    /// One-line description for the logs and the report.
    pub fn text(&self) -> &str {
        match self {
            Fault::HostVm(t) | Fault::InnerGuest(t) => t,
        }
    }
}

/// The nested-setup fault a failed attempt's evidence shows, if any.
fn fault_of(attempt: &Outcome, console: &str) -> Option<Fault> {
    attempt
        .nested_fault
        .clone()
        .or_else(|| crate::infra::host_vm_fault(console))
        .map(Fault::HostVm)
        .or_else(|| crate::infra::inner_guest_reset(console).map(Fault::InnerGuest))
}

/// Whether a scenario under `monitor` may run again, given the faults of its
/// attempts so far: a second attempt after any nested-setup fault; a third
/// only while the process's [`THIRD_ATTEMPT_BUDGET`] lasts, and only when
/// both faults were the host VM's own or, under the QEMU reference, either
/// kind. An inner guest that resets under colinux-daemon might be the
/// daemon's doing, so there one retry stays the limit; under the reference
/// QEMU nothing of the project's runs between the guest and KVM.
/// (Seen in CI runs: `distro` under the reference hit a host-VM kernel panic
/// twice in a row, and in another run an inner-guest reset 0.1 s into the
/// kernel twice in a row.)
pub fn may_run_again(monitor: Monitor, faults: &[Fault], budget_left: bool) -> bool {
    match (monitor, faults) {
        (_, [_]) => true,
        (_, [Fault::HostVm(_), Fault::HostVm(_)]) => budget_left,
        (Monitor::Qemu, [_, _]) => budget_left,
        _ => false,
    }
}

/// Run one scenario; when it fails and its host console shows that the host
/// VM's own kernel broke down or the inner guest reset unasked (see
/// [`crate::infra`]), or a watchdog found the host VM held by nested
/// virtualisation (see [`crate::host_state`]), keep that attempt's logs in
/// `<monitor>.attemptN/` and run it again, as [`may_run_again`] allows. Any
/// other failure stands.
pub fn run_scenario(s: &Scenario, monitor: Monitor, ctx: &RunContext) -> Outcome {
    use std::sync::atomic::Ordering;
    let t0 = Instant::now();
    let dir = scenario_dir(s, monitor);
    let mut faults: Vec<Fault> = Vec::new();
    // Each earlier attempt's fault and where its logs went, for the report.
    let mut earlier: Vec<String> = Vec::new();
    let mut notes = String::new();
    let mut attempt = 1;
    loop {
        let mut out = run_once(s, monitor, ctx);
        out.attempts = attempt;
        out.seconds = t0.elapsed().as_secs_f64();
        if !earlier.is_empty() {
            out.retried_because = Some(earlier.join("; then "));
            if let Ok(old) = std::fs::read_to_string(&out.log) {
                let _ = std::fs::write(&out.log, old + &notes);
            }
        }
        if out.result != Verdict::Fail {
            return out;
        }
        let console = std::fs::read_to_string(dir.join(HOST_CONSOLE_LOG)).unwrap_or_default();
        let Some(fault) = fault_of(&out, &console) else {
            return out;
        };
        faults.push(fault.clone());
        let third = faults.len() == 2;
        let budget_left = THIRD_ATTEMPTS_SPENT.load(Ordering::SeqCst) < THIRD_ATTEMPT_BUDGET;
        if !may_run_again(monitor, &faults, budget_left) {
            if third && !budget_left && may_run_again(monitor, &faults, true) {
                eprintln!(
                    "ci-boot: {} ({}) not run a third time: this run's {THIRD_ATTEMPT_BUDGET} third attempts are spent",
                    s.name,
                    monitor.name()
                );
            }
            return out;
        }
        if third {
            THIRD_ATTEMPTS_SPENT.fetch_add(1, Ordering::SeqCst);
        }
        let kept = dir.with_extension(format!("attempt{attempt}"));
        let _ = std::fs::remove_dir_all(&kept);
        if let Err(e) = std::fs::rename(&dir, &kept) {
            eprintln!("ci-boot: cannot keep {} ({e}); not retrying", dir.display());
            return out;
        }
        eprintln!(
            "ci-boot: {} ({}) attempt {attempt} failed on a fault of the nested setup: {}; \
             logs kept in {}; running it once more",
            s.name,
            monitor.name(),
            fault.text(),
            kept.display()
        );
        let _ = writeln!(
            notes,
            "attempt {attempt} failed on a fault of the nested setup: {}\n  its reasons: {}\n  its logs: {}",
            fault.text(),
            out.reasons.join(" | "),
            kept.display()
        );
        earlier.push(format!("{}; logs {}", fault.text(), kept.display()));
        attempt += 1;
    }
}

fn scenario_dir(s: &Scenario, monitor: Monitor) -> PathBuf {
    paths::ci_boot_dir()
        .join(s.log_name.as_ref().unwrap_or(&s.name))
        .join(monitor.name())
}

/// One attempt; never panics on bad input, every problem is a `fail` reason.
fn run_once(s: &Scenario, monitor: Monitor, ctx: &RunContext) -> Outcome {
    let t0 = Instant::now();
    let dir = scenario_dir(s, monitor);
    let mut out = Outcome::new(&s.name, monitor, dir.join("summary.txt"));
    let mut notes = String::new();
    match run_inner(s, monitor, ctx, &dir, &mut out, &mut notes) {
        Ok(()) => {}
        Err(e) => out.reasons.push(format!("harness error: {e:#}")),
    }
    if out.result != Verdict::Unsupported {
        out.result = if out.reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
    }
    out.seconds = t0.elapsed().as_secs_f64();
    let free = crate::util::free_mib(&paths::ci_boot_dir());
    if out.result == Verdict::Fail {
        if let Some(mib) = free.filter(|m| *m < crate::util::LOW_DISK_MIB) {
            out.reasons.push(format!(
                "the disk holding {} has only {mib} MiB free: a full disk makes QEMU pause the host VM (io-error) and work files fail to be written",
                paths::ci_boot_dir().display()
            ));
        }
    }
    let _ = writeln!(
        notes,
        "disk: {} MiB free after the run",
        free.map_or("?".to_string(), |m| m.to_string())
    );
    let mut summary = format!(
        "scenario {} monitor {}: {:?} in {:.1}s\n",
        s.name,
        monitor.name(),
        out.result,
        out.seconds
    );
    for r in &out.reasons {
        let _ = writeln!(summary, "  - {r}");
    }
    for n in &out.nudges {
        let _ = writeln!(summary, "nudged the host VM (its heartbeat was late): {n}");
    }
    summary.push_str(&notes);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&out.log, summary);
    out
}

fn run_inner(
    s: &Scenario,
    monitor: Monitor,
    ctx: &RunContext,
    dir: &Path,
    out: &mut Outcome,
    notes: &mut String,
) -> Result<()> {
    if dir.exists() {
        // Read-only work files must be made writable before removal.
        let mut files = Vec::new();
        crate::util::walk(dir, &mut files)?;
        for f in files {
            let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644));
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    if monitor == Monitor::Colinux {
        let missing: Vec<&String> = s
            .requires
            .iter()
            .filter(|r| !ctx.capabilities.contains(r))
            .collect();
        if !missing.is_empty() {
            out.result = Verdict::Unsupported;
            out.reasons.push(format!(
                "colinux-daemon lacks capabilities {missing:?} (it reports {:?})",
                ctx.capabilities
            ));
            return Ok(());
        }
    }
    let Some(work) = work::prepare(s, monitor, ctx, dir, out)? else {
        return Ok(());
    };
    let asserts = host_vm::run(s, monitor, ctx, dir, &work, out)?;
    judge::judge(s, monitor, dir, &work, &asserts, out, notes)
}

#[cfg(test)]
mod retry_tests {
    use super::{may_run_again, Fault, Monitor};

    fn host() -> Fault {
        Fault::HostVm("host VM kernel: BUG: TASK stack guard page was hit".into())
    }
    fn guest() -> Fault {
        Fault::InnerGuest("inner guest triple fault".into())
    }

    #[test]
    fn any_nested_fault_earns_a_second_attempt() {
        for m in [Monitor::Colinux, Monitor::Qemu] {
            assert!(may_run_again(m, &[host()], false));
            assert!(may_run_again(m, &[guest()], false));
        }
    }

    #[test]
    fn under_colinux_a_third_attempt_needs_two_host_vm_faults_and_budget() {
        let c = Monitor::Colinux;
        assert!(may_run_again(c, &[host(), host()], true));
        assert!(!may_run_again(c, &[host(), host()], false), "budget spent");
        assert!(!may_run_again(c, &[guest(), host()], true));
        assert!(!may_run_again(c, &[host(), guest()], true));
        assert!(!may_run_again(c, &[guest(), guest()], true));
    }

    #[test]
    fn under_the_reference_any_two_nested_faults_earn_a_third_within_budget() {
        let q = Monitor::Qemu;
        assert!(may_run_again(q, &[guest(), guest()], true));
        assert!(may_run_again(q, &[host(), guest()], true));
        assert!(
            !may_run_again(q, &[guest(), guest()], false),
            "budget spent"
        );
    }

    #[test]
    fn never_a_fourth() {
        for m in [Monitor::Colinux, Monitor::Qemu] {
            assert!(!may_run_again(m, &[host(), host(), host()], true));
        }
    }
}
