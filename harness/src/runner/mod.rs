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
    /// Runs it took: 2 when the first failed on a fault of the nested setup (see [`crate::infra`]).
    pub attempts: u32,
    /// The nested-setup fault that made the first attempt not count, with the
    /// directory its logs were kept in.
    pub retried_because: Option<String>,
    /// A watchdog fired and the host VM's state, asked of its QEMU, showed a
    /// fault of the nested setup (see [`crate::host_state`]).
    #[serde(skip)]
    pub nested_fault: Option<String>,
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

/// Run one scenario; when it fails and its host console shows that the host
/// VM's own kernel broke down or the inner guest reset unasked (see
/// [`crate::infra`]), or a watchdog found the host VM held by nested
/// virtualisation (see [`crate::host_state`]), keep that attempt's logs in
/// `<monitor>.attempt1/` and run it once more. Any other failure stands.
pub fn run_scenario(s: &Scenario, monitor: Monitor, ctx: &RunContext) -> Outcome {
    let t0 = Instant::now();
    let first = run_once(s, monitor, ctx);
    if first.result != Verdict::Fail {
        return first;
    }
    let dir = scenario_dir(s, monitor);
    let console = std::fs::read_to_string(dir.join(HOST_CONSOLE_LOG)).unwrap_or_default();
    let Some(fault) = first
        .nested_fault
        .clone()
        .or_else(|| crate::infra::host_vm_fault(&console))
        .or_else(|| crate::infra::inner_guest_reset(&console))
    else {
        return first;
    };
    let kept = dir.with_extension("attempt1");
    let _ = std::fs::remove_dir_all(&kept);
    if let Err(e) = std::fs::rename(&dir, &kept) {
        eprintln!("ci-boot: cannot keep {} ({e}); not retrying", dir.display());
        return first;
    }
    eprintln!(
        "ci-boot: {} ({}) attempt 1 failed on a fault of the nested setup: {fault}; \
         logs kept in {}; running it once more",
        s.name,
        monitor.name(),
        kept.display()
    );
    let mut second = run_once(s, monitor, ctx);
    second.attempts = 2;
    second.seconds = t0.elapsed().as_secs_f64();
    second.retried_because = Some(format!("{fault}; logs {}", kept.display()));
    let note = format!(
        "attempt 1 failed on a fault of the nested setup: {fault}\n  its reasons: {}\n  its logs: {}\n",
        first.reasons.join(" | "),
        kept.display()
    );
    if let Ok(old) = std::fs::read_to_string(&second.log) {
        let _ = std::fs::write(&second.log, old + &note);
    }
    second
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
    let mut out = Outcome {
        name: s.name.clone(),
        monitor,
        result: Verdict::Fail,
        seconds: 0.0,
        log: dir.join("summary.txt"),
        reasons: vec![],
        boots: vec![],
        attempts: 1,
        retried_because: None,
        nested_fault: None,
    };
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
