//! Telling a failure of the harness's own host VM apart from a failure of the
//! monitor under test.
//!
//! On machines without usable KVM the host VM is QEMU TCG emulating AMD SVM,
//! and the inner monitors (colinux-daemon and the reference QEMU alike) run on
//! the host VM's nested `kvm_amd`. That emulation occasionally wedges the host
//! VM's own kernel inside `VMRUN` (soft lockups and RCU stalls reported from
//! `svm_vcpu_run`, panics in `kvm_amd`). Those reports come from the host VM's
//! kernel, never from the guest (which has no KVM and runs no monitor), so they
//! name the infrastructure, not the code under test. Inner guests also reset
//! now and then in mid-work under either monitor ([`inner_guest_reset`]). The
//! runner retries a scenario once when, and only when, its host console
//! carries one of these; the report says which.

/// Words that start a kernel trouble report.
const TROUBLE: &[&str] = &[
    "soft lockup",
    "hard LOCKUP",
    "rcu: INFO:",
    "detected stalls on CPUs",
    "self-detected stall",
    "Kernel panic",
    "BUG:",
    "Oops:",
    "general protection fault",
    "hung_task",
    "blocked for more than",
];

/// Words that place a report in the host VM's kernel, running a monitor: only
/// the host VM has KVM loaded and runs the monitor processes.
const HOST_KVM: &[&str] = &[
    "svm_vcpu_run",
    "kvm_amd",
    "kvm_arch_vcpu_ioctl_run",
    "vmx_vcpu_run",
    "kvm_intel",
    "Comm: colinux-daemon",
    "Comm: qemu-system-x86",
    // colinux-daemon's vCPU threads are named vcpuN, QEMU's "CPU N/KVM".
    "Comm: vcpu",
    "Comm: CPU ",
    // The soft-lockup line itself ends with [comm:pid].
    "[colinux-daemon:",
    "[qemu-system-x86:",
    "[vcpu",
    "/KVM:",
];

/// How far after a trouble line the host-KVM evidence may appear (a stack
/// trace is a few dozen lines).
const WINDOW: usize = 60;

/// The first host-VM kernel fault in `console` (the host VM's serial log), as
/// a one-line description, or None when there is none.
pub fn host_vm_fault(console: &str) -> Option<String> {
    let lines: Vec<&str> = console.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !TROUBLE.iter().any(|t| line.contains(t)) {
            continue;
        }
        let end = (i + WINDOW).min(lines.len());
        if let Some(ev) = lines[i..end]
            .iter()
            .find(|l| HOST_KVM.iter().any(|k| l.contains(k)))
        {
            return Some(if ev == line {
                format!("host VM kernel: {}", line.trim())
            } else {
                format!("host VM kernel: {} (at {})", line.trim(), ev.trim())
            });
        }
    }
    None
}

/// The first inner-guest reset the guest agent did not ask for, as a one-line
/// description, or None.
///
/// In this nested setup an inner guest now and then resets in the middle of
/// its work (a triple fault), under QEMU as under colinux-daemon — seen in
/// ci-boot and in the benchmarks with both. A guest that *panics* is not
/// counted (its kernel says so), nor one that ends by the agent's own
/// `COLINUX-AGENT END`. What counts:
/// - colinux-daemon's report `the guest stopped: vCPU N: triple fault`;
/// - a boot the host init saw end with status 0 (QEMU with -no-reboot exits 0
///   on a guest reset) without the agent's END or a kernel panic in between,
///   where the guest's console is on the host console (its READY, or QEMU's
///   BIOS banner, was seen);
/// - in cobd-crash, a monitor that exited with status 0 before the guest's
///   first record, without a kernel panic.
pub fn inner_guest_reset(console: &str) -> Option<String> {
    let mut in_boot: Option<u32> = None;
    let mut ended_or_panicked = false;
    // Whether this boot's guest console is on the host console at all (the
    // host init streams it; the benchmark scripts keep it in files instead).
    let mut guest_visible = false;
    for line in console.lines() {
        let l = line.trim();
        if l.contains("the guest stopped: vCPU") && l.contains("triple fault") {
            return Some(format!("inner guest triple fault: {l}"));
        }
        // The agent's END, a panic, or a kernel that powered down or
        // restarted as asked (a distribution's `poweroff`/`reboot`).
        if l.contains("COLINUX-AGENT END")
            || l.contains("Kernel panic")
            || l.contains("reboot: Power down")
            || l.contains("reboot: Restarting system")
        {
            ended_or_panicked = true;
        }
        if l.contains("COLINUX-AGENT READY") || l.contains("SeaBIOS") {
            guest_visible = true;
        }
        if let Some((n, kind, rest)) = crate::checks::parse_boot_mark(l) {
            match kind {
                "START" => {
                    in_boot = Some(n);
                    ended_or_panicked = false;
                    guest_visible = false;
                }
                "EXIT" if rest.first() == Some(&"0") && guest_visible && !ended_or_panicked => {
                    return Some(format!(
                        "inner guest reset: boot {} ended with status 0 without the agent's END",
                        in_boot.map_or("?".to_string(), |n| n.to_string())
                    ));
                }
                _ => {}
            }
        }
        if l.contains("monitor exited (status 0) before the first durable record")
            && !l.contains("Kernel panic")
            && !l.contains("Kernel Offset")
        {
            return Some(format!("inner guest reset: {l}"));
        }
    }
    None
}

/// The host VM itself reset mid-run: its QEMU runs with `-no-reboot` and the
/// host kernel with `panic=-1`, so QEMU exiting with status 0 before the
/// host init's `COLINUX-HOST DONE`, with no `Kernel panic` on the console, is
/// a CPU reset of the host VM (a triple fault in the emulated nested setup).
/// Nothing under test can do that: the monitors are host-VM processes, the
/// guests run nested. Seen once under qemu in the distro scenario (the host
/// VM vanished at uptime 102 s, its console and heartbeat cut mid-line).
pub fn host_vm_reset(console: &str, exited_ok: bool, done: bool) -> Option<String> {
    if !exited_ok || done || console.contains("Kernel panic") {
        return None;
    }
    let up = console
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("COLINUX-HOST BOOT "))
        .map(|l| format!(" (last host mark: BOOT {l})"))
        .unwrap_or_default();
    Some(format!(
        "host VM reset: its QEMU exited 0 before COLINUX-HOST DONE, with no kernel panic{up}"
    ))
}

/// Seconds of soft lockup after which a host VM is taken as wedged for good.
pub const WEDGED_SECS: u64 = 60;

/// Whether this console line says the host VM's kernel has been stuck in a
/// monitor process for at least [`WEDGED_SECS`]: the run can stop waiting.
pub fn wedged(line: &str) -> bool {
    if !line.contains("soft lockup") || !HOST_KVM.iter().any(|k| line.contains(k)) {
        return false;
    }
    line.split("stuck for ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .is_some_and(|secs| secs >= WEDGED_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_lockup_in_svm_vcpu_run_is_a_host_fault() {
        let log = "COLINUX-AGENT END\n\
            [   41.2] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [colinux-daemon:131]\n\
            [   41.2] CPU: 1 PID: 131 Comm: colinux-daemon Not tainted 6.1.0-57-cloud-amd64\n\
            [   41.2] RIP: 0010:svm_vcpu_run+0x1f3/0x2a0 [kvm_amd]\n";
        let f = host_vm_fault(log).expect("a host fault");
        assert!(f.contains("soft lockup"), "{f}");
        assert!(f.contains("colinux-daemon"), "{f}");
    }

    #[test]
    fn a_bare_soft_lockup_line_naming_the_monitor_is_enough() {
        // What the console shows when only KERN_EMERG lines get through.
        let log = "COLINUX-AGENT swap data read back at uptime 23.77\n\
            [   84.456546] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [qemu-system-x86:134]\n";
        assert!(host_vm_fault(log).is_some_and(|f| f.contains("stuck for 26s")));
    }

    #[test]
    fn a_stack_overflow_in_a_vcpu_thread_is_a_host_fault() {
        // bench net, colinux round: the host VM's kernel took a page fault with
        // the guest's GS base in colinux-daemon's vCPU thread, and recursed.
        let log = "[  226.112590] BUG: TASK stack guard page was hit at 000000003deb1fea\n\
            [  226.112590] stack guard page: 0000 [#1] PREEMPT SMP NOPTI\n\
            [  226.112590] CPU: 0 PID: 1196 Comm: vcpu0 Not tainted 6.1.0-57-cloud-amd64 #1\n\
            [  226.112590] RIP: 0010:exc_page_fault+0x15/0x170\n\
            [  226.224944] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n";
        let f = host_vm_fault(log).expect("a host fault");
        assert!(f.contains("stack guard page"), "{f}");
        let lockup = "[ 84.4] watchdog: BUG: soft lockup - CPU#1 stuck for 70s! [CPU 0/KVM:134]";
        assert!(host_vm_fault(lockup).is_some());
        assert!(wedged(lockup));
    }

    #[test]
    fn a_guest_stall_is_not_a_host_fault() {
        // The guest's own kernel has no KVM and runs no monitor.
        let log = "[   12.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n\
            [   12.0] CPU: 0 PID: 1 Comm: sh Not tainted 6.1.0-57-cloud-amd64\n\
            [   12.0]  dd_write+0x10/0x20\n";
        assert_eq!(host_vm_fault(log), None);
    }

    #[test]
    fn evidence_far_from_the_report_does_not_count() {
        let mut log = String::from("[ 1.0] BUG: kernel NULL pointer dereference\n");
        for _ in 0..WINDOW {
            log.push_str("filler\n");
        }
        log.push_str("kvm [127]: vcpu0 Unhandled WRMSR in kvm_amd\n");
        assert_eq!(host_vm_fault(&log), None);
    }

    #[test]
    fn wedged_after_a_minute_in_the_monitor() {
        let at = |s: u32, comm: &str| {
            format!("[ 9.1] watchdog: BUG: soft lockup - CPU#1 stuck for {s}s! [{comm}:134]")
        };
        assert!(!wedged(&at(26, "qemu-system-x86")));
        assert!(wedged(&at(78, "qemu-system-x86")));
        assert!(wedged(&at(60, "colinux-daemon")));
        assert!(
            !wedged(&at(300, "dd")),
            "a guest process is not the host VM"
        );
    }

    #[test]
    fn an_unasked_guest_reset_is_recognised() {
        // ci-boot cobd-io under qemu: the guest died during the inventory.
        let qemu = "COLINUX-HOST BOOT 1 START 4.1 qemu\n\
            COLINUX-AGENT READY uptime=3.37\n\
            COLINUX-INV blk cobd0 sectors=81\n\
            COLINUX-HOST BOOT 1 EXIT 0 11.03\n";
        assert!(inner_guest_reset(qemu).is_some_and(|r| r.contains("boot 1")));
        let colinux = "colinux-daemon: the guest stopped: vCPU 0: triple fault (CPU shutdown)\n";
        assert!(inner_guest_reset(colinux).is_some());
        let crash = "COLINUX-CHECK cobd-crash kill-8 FAIL the monitor exited (status 0) before \
            the first durable record (monitor log /work/out/guest-8.log: SeaBIOS)\n";
        assert!(inner_guest_reset(crash).is_some());
    }

    #[test]
    fn a_boot_whose_console_is_elsewhere_is_not_judged() {
        // The benchmark scripts keep the guest's console in files.
        let bench = "COLINUX-HOST BOOT 2 START 3.07 colinux\n\
            COLINUX-HOST BOOT 2 EXIT 0 58.38\n\
            COLINUX-CHECK bench-net colinux-2 PASS 4 transfers\n";
        assert_eq!(inner_guest_reset(bench), None);
        // QEMU's guest reset before its agent's READY: the BIOS banner shows the console.
        let early = "COLINUX-HOST BOOT 1 START 3.0 qemu\nSeaBIOS (version 1.16.2)\n\
            COLINUX-HOST BOOT 1 EXIT 0 6.0\n";
        assert!(inner_guest_reset(early).is_some());
    }

    #[test]
    fn a_normal_end_a_panic_or_a_failed_check_is_not_a_reset() {
        let normal = "COLINUX-HOST BOOT 1 START 4.1 qemu\nCOLINUX-AGENT END\n\
            COLINUX-HOST BOOT 1 EXIT 0 11.0\nCOLINUX-HOST BOOT 2 START 11.1 qemu\n\
            COLINUX-AGENT END\nCOLINUX-HOST BOOT 2 EXIT 0 15.0\n";
        assert_eq!(inner_guest_reset(normal), None);
        let panic = "COLINUX-HOST BOOT 1 START 4.1 colinux\n\
            [ 2.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n\
            COLINUX-HOST BOOT 1 EXIT 0 9.0\n";
        assert_eq!(inner_guest_reset(panic), None);
        let failed = "COLINUX-HOST BOOT 1 START 4.1 colinux\n\
            COLINUX-CHECK cobd-io cobd0-sha256 FAIL expected=a got=b\nCOLINUX-AGENT END\n\
            COLINUX-HOST BOOT 1 EXIT 0 9.0\n";
        assert_eq!(inner_guest_reset(failed), None);
        let fault = "colinux-daemon: the guest stopped: vCPU 0: unexpected exit\n\
            COLINUX-HOST BOOT 1 EXIT 1 9.0\n";
        assert_eq!(
            inner_guest_reset(fault),
            None,
            "a monitor fault is the monitor's"
        );
    }

    #[test]
    fn a_host_vm_that_vanished_mid_run_reset() {
        let c = "COLINUX-HOST READY kvm=yes\nCOLINUX-HOST BOOT 1 START 7.31 qemu\nDebian GNU/Linux 12 colinux ttyS0\n";
        let r = host_vm_reset(c, true, false).unwrap();
        assert!(r.contains("BOOT 1 START 7.31 qemu"), "{r}");
        assert_eq!(host_vm_reset(c, true, true), None, "it finished");
        assert_eq!(
            host_vm_reset(c, false, false),
            None,
            "killed or failed: not a reset"
        );
        let p = format!("{c}Kernel panic - not syncing: Fatal exception\n");
        assert_eq!(
            host_vm_reset(&p, true, false),
            None,
            "a host panic says so itself"
        );
    }

    #[test]
    fn a_guest_that_powered_down_did_not_reset() {
        let c = "COLINUX-HOST BOOT 1 START 7.3 qemu\nSeaBIOS (version 1.16)\n\
                 [ 79.6] reboot: Power down\nCOLINUX-HOST BOOT 1 EXIT 0 80.1\n";
        assert_eq!(inner_guest_reset(c), None);
        let r = c.replace("[ 79.6] reboot: Power down\n", "");
        assert!(inner_guest_reset(&r).is_some());
    }

    #[test]
    fn a_clean_log_has_no_fault() {
        assert_eq!(
            host_vm_fault("COLINUX-HOST READY kvm=yes\nCOLINUX-HOST DONE\n"),
            None
        );
    }
}
