//! The host VM of one run: started under QEMU with the work disk, its
//! console followed to `COLINUX-HOST DONE` (assertions and boot marks read on
//! the way) under the deadline and the watchdogs.

use super::work::Work;
use super::{BootMarks, Monitor, Outcome, RunContext, HOST_CONSOLE_LOG};
use crate::checks::{self, Assertion};
use crate::host_state::{self, HostKernelMap};
use crate::qemu::{ConsoleEvent, Control, HostVm};
use crate::scenario::Scenario;
use crate::watchdog::{Bounds, Expiry, Watchdog};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Boots the host VM on `work`'s disk and follows its console until it is
/// done, stopped or silent; the assertions it reported (failures to finish
/// are reasons in `out`, the boot marks `out.boots`).
pub(super) fn run(
    s: &Scenario,
    monitor: Monitor,
    ctx: &RunContext,
    dir: &Path,
    work: &Work,
    out: &mut Outcome,
) -> Result<Vec<Assertion>> {
    let control = Control::new(dir);
    let vm = HostVm {
        qemu: "qemu-system-x86_64".into(),
        kernel: ctx.images.path("kernel"),
        initrd: ctx.images.path("host-initrd"),
        append: host_vm_append(),
        mem_mib: s.host_mem_mib,
        smp: host_vm_cpus(ctx.accel),
        accel: ctx.accel,
        disks: vec![(work.img.clone(), "work".into())],
        control: Some(control.clone()),
    };
    let inner_line = work
        .inner
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
    let console_log = dir.join(HOST_CONSOLE_LOG);
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
        let expired = watchdog.poll(Instant::now());
        if let (None, Some(late)) = (&expired, watchdog.nudge_due(Instant::now())) {
            nudge(&control, started.elapsed(), late, out);
        }
        if let Some(expiry) = expired {
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
    Ok(asserts)
}

/// How often the runner looks at its watchdogs while the console is quiet.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The host VM's heartbeat is `late`: press and release Shift on its
/// keyboard through QMP. The keyboard interrupt ends a CPU's idle wait; the
/// key itself types nothing. Each nudge is said on stderr and kept in
/// `out.nudges` (the report and the soak's table show them).
fn nudge(control: &Control, into_run: Duration, late: Duration, out: &mut Outcome) {
    let keys = serde_json::json!({ "keys": [{ "type": "qcode", "data": "shift" }] });
    let sent = crate::qmp::Qmp::connect(&control.qmp_socket, Duration::from_secs(5))
        .and_then(|mut q| q.execute("send-key", Some(keys)));
    let what = format!(
        "{}s into the run, heartbeat {}s late: {}",
        into_run.as_secs(),
        late.as_secs(),
        match sent {
            Ok(_) => "Shift pressed through QMP".to_string(),
            Err(e) => format!("QMP send-key failed: {e:#}"),
        }
    );
    eprintln!(
        "ci-boot: {} ({}): nudged the host VM: {what}",
        out.name,
        out.monitor.name()
    );
    out.nudges.push(what);
}

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

/// vCPUs of the host VM: `$COLINUX_HOST_CPUS`, else 1 under TCG and 2 under
/// KVM.
///
/// Under TCG one vCPU is the measured choice. With two, the nested guest
/// reset or the host VM's kernel broke down far more often: `distro` under
/// the qemu reference, run alone (its two TCG threads on two cores), failed
/// on such a fault in 5 of 5 first attempts over three clean-clone CI runs,
/// and 3 of 3 attempts in one of them; with one vCPU it passed (160 s, login
/// prompt 64 s after start, against 43 s with two). One vCPU leaves no
/// cross-CPU interrupts in the host VM for TCG's SVM emulation to get wrong,
/// and two scenarios side by side then use the machine's two cores with no
/// oversubscription. Under KVM the host VM's vCPUs are real ones.
pub fn host_vm_cpus(accel: crate::qemu::Accel) -> u32 {
    std::env::var("COLINUX_HOST_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(match accel {
            crate::qemu::Accel::Tcg => 1,
            crate::qemu::Accel::Kvm => 2,
        })
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

    // nextest runs each test in its own process: the environment is its own.
    #[test]
    fn one_host_cpu_under_tcg_two_under_kvm_unless_asked() {
        use crate::qemu::Accel;
        std::env::remove_var("COLINUX_HOST_CPUS");
        assert_eq!(host_vm_cpus(Accel::Tcg), 1);
        assert_eq!(host_vm_cpus(Accel::Kvm), 2);
        std::env::set_var("COLINUX_HOST_CPUS", "3");
        assert_eq!(host_vm_cpus(Accel::Tcg), 3);
        std::env::set_var("COLINUX_HOST_CPUS", "0");
        assert_eq!(host_vm_cpus(Accel::Tcg), 1, "out of range: the default");
    }

    #[test]
    fn a_nudge_presses_shift_through_qmp_and_is_recorded() {
        let dir = std::env::temp_dir().join(format!("nudge-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let control = Control::new(&dir);
        let server = crate::qmp::fake::serve(&control.qmp_socket, 1);
        let mut out = Outcome::new("bench-net", Monitor::Colinux, "summary.txt".into());
        nudge(
            &control,
            Duration::from_secs(300),
            Duration::from_secs(21),
            &mut out,
        );
        let asked: serde_json::Value = serde_json::from_str(&server.join().unwrap()[0]).unwrap();
        assert_eq!(asked["execute"], "send-key");
        assert_eq!(asked["arguments"]["keys"][0]["data"], "shift");
        assert_eq!(
            out.nudges,
            ["300s into the run, heartbeat 21s late: Shift pressed through QMP"]
        );

        // no QEMU to answer: the nudge is still recorded, with why it failed
        let _ = std::fs::remove_file(&control.qmp_socket);
        nudge(
            &control,
            Duration::from_secs(320),
            Duration::from_secs(41),
            &mut out,
        );
        assert!(
            out.nudges[1].starts_with("320s into the run, heartbeat 41s late: QMP send-key failed"),
            "{}",
            out.nudges[1]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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
