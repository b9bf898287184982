//! Running one scenario under one inner monitor in a fresh host VM, and
//! judging it: assertions, harness-side checks, snapshot.

use crate::checks::{self, Assertion};
use crate::host_state::{self, HostKernelMap};
use crate::images::Images;
use crate::inner::inner_qemu;
use crate::qemu::{Accel, ConsoleEvent, Control, HostVm};
use crate::scenario::{PostCheck, Scenario};
use crate::watchdog::{Bounds, Expiry, Watchdog};
use crate::workdisk::{self, MadeFile};
use crate::{conf, paths, snapshot};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    let console = std::fs::read_to_string(dir.join("host-console.log")).unwrap_or_default();
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
    let recipes = paths::recipes_dir();
    let host_script = recipes
        .join("host/scenarios")
        .join(format!("{}.sh", s.name));
    if s.host_script && !host_script.exists() {
        out.reasons
            .push(format!("host script {} missing", host_script.display()));
        return Ok(());
    }

    // 1. work directory
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("out"))?;
    let mut made: BTreeMap<String, MadeFile> = BTreeMap::new();
    for f in &s.files {
        let m = workdisk::make_file(&work, f, &|n| ctx.images.path(n))?;
        made.insert(f.name.clone(), m);
    }
    let expand = |text: &str| {
        crate::scenario::expand(text, &|kind, file| {
            let m = made.get(file)?;
            match kind {
                "sha256" => Some(m.sha256.clone()),
                "size" => Some(m.size.to_string()),
                _ => None,
            }
        })
    };
    let conf_text = expand(&s.conf)?;
    let parsed = conf::parse(&conf_text).context("scenario conf")?;
    let read_only = |p: &str| {
        p.strip_prefix("/work/")
            .and_then(|f| std::fs::metadata(work.join(f)).ok())
            .is_some_and(|m| m.permissions().mode() & 0o222 == 0)
    };
    for (name, text) in &s.extra_confs {
        let text = expand(text)?;
        let c = conf::parse(&text).with_context(|| format!("scenario extra conf {name}"))?;
        std::fs::write(work.join(format!("{name}.conf")), &text)?;
        let argv = inner_qemu(&c, &read_only).argv;
        std::fs::write(
            work.join(format!("{name}.qemu.args")),
            argv.join("\n") + "\n",
        )?;
    }
    let check_name = parsed
        .kernel_cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("colinux.check="))
        .unwrap_or(&s.name)
        .to_string();
    let guest_check = recipes
        .join("guest/checks")
        .join(format!("{check_name}.sh"));
    if !guest_check.exists() {
        out.reasons
            .push(format!("guest check {} missing", guest_check.display()));
        return Ok(());
    }
    std::fs::write(work.join("colinux.conf"), &conf_text)?;
    std::fs::write(dir.join("colinux.conf"), &conf_text)?;
    let inner = inner_qemu(&parsed, &read_only);
    std::fs::write(work.join("qemu.args"), inner.argv.join("\n") + "\n")?;
    if !inner.prepare.is_empty() && monitor == Monitor::Qemu {
        std::fs::write(
            work.join("prepare.sh"),
            format!(". /etc/colinux/host-lib.sh\n{}\n", inner.prepare.join("\n")),
        )?;
    }
    std::fs::write(
        work.join("scenario.env"),
        format!(
            "SCENARIO={}\nMONITOR={}\nBOOTS={}\nBOOT_TIMEOUT={}\nINTERACTIVE=0\nCONSOLE_IN={}\n",
            s.name,
            monitor.name(),
            s.boots,
            s.boot_timeout_secs,
            u8::from(s.console_input)
        ),
    )?;
    // The check script also rides on the work disk, for guests that are not
    // the agent (a distribution image): the host script runs it over ssh.
    std::fs::copy(&guest_check, work.join("guest-check.sh"))?;
    if host_script.exists() {
        std::fs::copy(&host_script, work.join("scenario.sh"))?;
    }
    let img = dir.join("work.img");
    workdisk::make_image(&work, &img)?;

    // 2. host VM
    let control = Control::new(dir);
    let vm = HostVm {
        qemu: "qemu-system-x86_64".into(),
        kernel: ctx.images.path("kernel"),
        initrd: ctx.images.path("host-initrd"),
        append: host_vm_append(),
        mem_mib: s.host_mem_mib,
        smp: host_vm_cpus(),
        accel: ctx.accel,
        disks: vec![(img.clone(), "work".into())],
        control: Some(control.clone()),
    };
    let inner_line = inner
        .argv
        .iter()
        .map(|a| crate::qemu::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let inner_desc = match monitor {
        Monitor::Qemu => inner_line,
        Monitor::Colinux => "colinux-daemon @/work/colinux.conf".to_string(),
    };
    std::fs::write(
        dir.join("qemu-cmdline.txt"),
        format!(
            "# host VM (outer)\n{}\n# inner monitor (inside the host VM)\n{inner_desc}\n",
            vm.command_line()
        ),
    )?;
    let console_log = dir.join("host-console.log");
    let mut console = vm.spawn(&console_log)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(s.timeout_secs);
    let mut watchdog = Watchdog::new(
        Bounds::for_boot_timeout(Duration::from_secs(s.boot_timeout_secs)),
        control.beat_file.clone(),
        started,
    );
    let mut asserts: Vec<Assertion> = Vec::new();
    let mut boots: BTreeMap<u32, BootMarks> = BTreeMap::new();
    let mut done = false;
    let mut last = String::new();
    loop {
        let wake = deadline.min(Instant::now() + WATCH_EVERY);
        match console.next_event(wake) {
            ConsoleEvent::Line(l) => {
                if ctx.verbose {
                    eprintln!("  | {l}");
                }
                if let Some(a) = checks::parse_assertion(&l) {
                    asserts.push(a);
                }
                parse_boot_mark(&l, &mut boots);
                watchdog.on_line(&l, Instant::now());
                if l.contains("COLINUX-HOST DONE") {
                    done = true;
                }
                if crate::infra::wedged(&l) {
                    out.reasons.push(format!(
                        "host VM wedged, stopped waiting: {}; see {}",
                        l.trim(),
                        console_log.display()
                    ));
                    break;
                }
                if !l.trim().is_empty() {
                    last = l;
                }
            }
            ConsoleEvent::Eof => break,
            ConsoleEvent::Timeout if Instant::now() >= deadline => {
                out.reasons.push(format!(
                    "host VM did not finish within {}s (last console line: {last:?}); see {}",
                    s.timeout_secs,
                    console_log.display()
                ));
                break;
            }
            ConsoleEvent::Timeout => {}
        }
        if let Some(expiry) = watchdog.poll(Instant::now()) {
            on_watchdog(&expiry, &control, dir, &console_log, &last, out);
            // what the host VM's kernel prints on SysRq-L reaches the log
            let grace = Instant::now() + Duration::from_secs(5);
            while let ConsoleEvent::Line(_) = console.next_event(grace) {}
            break;
        }
    }
    let status = console.finish(Instant::now() + Duration::from_secs(15));
    let _ = std::fs::remove_file(&control.qmp_socket);
    if !done && out.reasons.is_empty() {
        out.reasons.push(format!(
            "host VM ended ({status:?}) without COLINUX-HOST DONE (last console line: {last:?}); see {}",
            console_log.display()
        ));
        let text = std::fs::read_to_string(&console_log).unwrap_or_default();
        let exited_ok = status.as_ref().is_some_and(|s| s.success());
        if let Some(why) = crate::infra::host_vm_reset(&text, exited_ok, done) {
            out.nested_fault.get_or_insert(why);
        }
    }
    out.boots = boots.values().cloned().collect();

    // 3. results back from the work disk
    checks::debugfs_rdump(&img, "/out", dir)?;
    let mut guest = String::new();
    for n in 1..=s.boots {
        let p = dir.join("out").join(format!("guest-{n}.log"));
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = writeln!(guest, "===== boot {n} ({}) =====\n{text}", monitor.name());
    }
    let guest_log = dir.join("guest-console.log");
    std::fs::write(&guest_log, &guest)?;
    let _ = writeln!(
        notes,
        "logs: host console {}\n      guest console {}\n      conf {}\n      command lines {}",
        console_log.display(),
        guest_log.display(),
        dir.join("colinux.conf").display(),
        dir.join("qemu-cmdline.txt").display()
    );

    // 4. assertions
    for a in asserts.iter().filter(|a| !a.pass) {
        out.reasons.push(format!(
            "assertion {} {} FAIL: {}",
            a.scenario, a.name, a.detail
        ));
    }
    for e in &s.expect {
        if !asserts.iter().any(|a| &a.name == e && a.pass) {
            out.reasons
                .push(format!("expected assertion {e} PASS was not reported"));
        }
    }
    let _ = writeln!(notes, "assertions:");
    for a in &asserts {
        let _ = writeln!(
            notes,
            "  {} {} {} {}",
            a.scenario,
            a.name,
            if a.pass { "PASS" } else { "FAIL" },
            a.detail
        );
    }

    // 5. harness-side checks on the work files after the run
    let after = dir.join("after");
    std::fs::create_dir_all(&after)?;
    for p in &s.post {
        let file = match p {
            PostCheck::Unchanged { file }
            | PostCheck::Pattern { file, .. }
            | PostCheck::E2fsck { file } => file,
        };
        let dest = after.join(file);
        if !dest.exists() {
            if let Err(e) = checks::debugfs_dump(&img, &format!("/{file}"), &dest) {
                out.reasons.push(format!("post check on {file}: {e:#}"));
                continue;
            }
        }
        let r = match p {
            PostCheck::Unchanged { file } => match made.get(file) {
                Some(m) => checks::check_unchanged(&dest, &m.sha256),
                None => Err(format!("{file} is not a generated work file")),
            },
            PostCheck::Pattern {
                seed,
                blocks,
                stride,
                ..
            } => checks::check_pattern(&dest, *seed, *blocks, *stride),
            PostCheck::E2fsck { .. } => checks::check_e2fsck(&dest),
        };
        let _ = writeln!(
            notes,
            "post {p:?}: {}",
            r.as_ref().err().map_or("ok", |e| e.as_str())
        );
        if let Err(e) = r {
            out.reasons.push(format!("post check: {e}"));
        }
    }

    // 6. snapshot of what the guest sees
    if let Some(name) = &s.snapshot {
        let inv = snapshot::inventory(&guest);
        std::fs::write(dir.join("inventory.txt"), &inv)?;
        if inv.trim().is_empty() {
            out.reasons
                .push("no COLINUX-INV inventory in the guest console".into());
        } else if let Err(e) = snapshot::compare(name, &inv) {
            out.reasons.push(e);
        }
    }

    // Big files are only kept when they explain a failure.
    if out.reasons.is_empty() {
        let _ = std::fs::remove_file(&img);
        let _ = std::fs::remove_dir_all(&after);
        for m in made.values() {
            let _ = std::fs::set_permissions(&m.path, std::fs::Permissions::from_mode(0o644));
            let _ = std::fs::remove_file(&m.path);
        }
    }
    Ok(())
}

/// How often the runner looks at its watchdogs while the console is quiet.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// A watchdog fired: ask the host VM's QEMU for its state, keep it in
/// `host-vm-state.txt`, and say what was found; a nested-setup fault is
/// recorded for the retry rule.
fn on_watchdog(
    expiry: &Expiry,
    control: &Control,
    dir: &Path,
    console_log: &Path,
    last: &str,
    out: &mut Outcome,
) {
    eprintln!(
        "ci-boot: {} ({}): watchdog: {}; asking the host VM's QEMU for its state",
        out.name,
        out.monitor.name(),
        expiry.what
    );
    let console = std::fs::read_to_string(console_log).unwrap_or_default();
    let map = HostKernelMap::new(&console);
    let state = host_state::capture(
        &control.qmp_socket,
        &map,
        expiry.beats,
        4,
        Duration::from_secs(1),
    );
    let state_file = dir.join("host-vm-state.txt");
    let _ = std::fs::write(
        &state_file,
        format!("watchdog: {}\n\n{}", expiry.what, state.report),
    );
    out.reasons.push(format!(
        "watchdog: {} (last console line: {last:?}); host VM state: {}; see {} and {}",
        expiry.what,
        state.summary,
        state_file.display(),
        console_log.display()
    ));
    if state.nested_fault {
        out.nested_fault = Some(format!("watchdog: {}; {}", expiry.what, state.summary));
    }
}

/// The host VM's kernel command line; `$COLINUX_HOST_KVM_AMD` (e.g. `npt=0`,
/// comma-separated) becomes kvm_amd's module parameters inside it, and
/// `$COLINUX_MONITOR_ENV` (`K=V,K=V`) the inner monitors' extra environment.
pub fn host_vm_append() -> String {
    // loglevel=5: the host VM's kernel warnings (stack traces of a soft
    // lockup, say) reach the console, so infra faults can be told apart.
    let mut a = String::from("console=ttyS0 panic=-1 loglevel=5 sysrq_always_enabled");
    for (var, word) in [
        ("COLINUX_HOST_KVM_AMD", "colinux.kvm_amd"),
        ("COLINUX_MONITOR_ENV", "colinux.env"),
    ] {
        if let Ok(p) = std::env::var(var) {
            let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
            if !p.is_empty() {
                a.push_str(&format!(" {word}={p}"));
            }
        }
    }
    a
}

/// vCPUs of the host VM: `$COLINUX_HOST_CPUS`, default 2.
pub fn host_vm_cpus() -> u32 {
    std::env::var("COLINUX_HOST_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2)
}

/// Records `COLINUX-HOST BOOT <n> START|READY|EXIT ...` marks.
fn parse_boot_mark(line: &str, boots: &mut BTreeMap<u32, BootMarks>) {
    let Some((n, kind, rest)) = checks::parse_boot_mark(line) else {
        return;
    };
    let val = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok());
    let b = boots.entry(n).or_default();
    match kind {
        "START" => b.start = val(0),
        "READY" => b.ready = val(0),
        "EXIT" => b.exit = val(1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_marks() {
        let mut b = BTreeMap::new();
        parse_boot_mark("COLINUX-HOST BOOT 1 START 4.50 qemu", &mut b);
        parse_boot_mark("x COLINUX-HOST BOOT 1 READY 9.75", &mut b);
        parse_boot_mark("COLINUX-HOST BOOT 1 EXIT 0 11.00", &mut b);
        let m = &b[&1];
        assert_eq!(m.boot_to_init(), Some(5.25));
        assert_eq!(m.exit, Some(11.0));
    }
}
