//! What a silent host VM is doing: its QEMU's run state and where each of
//! its CPUs is, sampled over QMP, placed against the host VM's own kernel
//! (the text range and module load addresses its init prints; Debian ships
//! no real System.map, so function names come from the SysRq-L backtraces
//! the host VM's kernel prints on its console), and judged.
//!
//! The judgement is deliberately narrow. A host VM counts as a fault of the
//! nested setup (worth one recorded retry) only when its QEMU stopped
//! answering or stopped the VM with an error, or when the host VM's own user
//! space stopped beating *and* a CPU sat in every sample inside KVM or in the
//! nested guest while no CPU idled: the host VM's kernel never got its CPUs
//! back from nested virtualisation. Anything else is reported, not excused.

use crate::qmp::Qmp;
use crate::watchdog::Beats;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// One CPU's state in one sample (from `info registers -a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    /// CPU index.
    pub cpu: u32,
    /// Instruction pointer.
    pub rip: u64,
    /// Current privilege level.
    pub cpl: u8,
    /// The CPU is halted (HLT=1).
    pub halted: bool,
}

/// Parses QEMU's `info registers -a` text into one sample per CPU.
pub fn parse_registers(text: &str) -> Vec<CpuSample> {
    let mut out = Vec::new();
    let mut cpu: Option<u32> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("CPU#") {
            cpu = n.trim().parse().ok();
            continue;
        }
        let Some(rip) = field(line, "RIP=") else {
            continue;
        };
        let (Some(c), Ok(rip)) = (cpu, u64::from_str_radix(rip, 16)) else {
            continue;
        };
        out.push(CpuSample {
            cpu: c,
            rip,
            cpl: field(line, "CPL=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            halted: field(line, "HLT=") == Some("1"),
        });
    }
    out
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// The host VM kernel's code layout: its text range and the modules' load
/// ranges, at run time.
#[derive(Debug, Clone, Default)]
pub struct HostKernelMap {
    /// Run-time start and end of the core kernel's text.
    text: Option<(u64, u64)>,
    /// Modules (name, base, size).
    modules: Vec<(String, u64, u64)>,
}

/// Modules whose code means "running (or entering) a nested guest".
const KVM_MODULES: &[&str] = &["kvm", "kvm_amd", "kvm_intel"];

impl HostKernelMap {
    /// Builds the map from the host init's console lines
    /// `COLINUX-HOST KERNEL _stext=ADDR _etext=ADDR` and
    /// `COLINUX-HOST MODULE NAME SIZE ADDR`.
    pub fn new(console: &str) -> Self {
        let mut map = Self::default();
        let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok();
        for l in console.lines() {
            let Some(at) = l.find("COLINUX-HOST ") else {
                continue;
            };
            let f: Vec<&str> = l[at..].split_whitespace().collect();
            match f.get(1).copied() {
                Some("KERNEL") => {
                    let get = |key: &str| {
                        f[2..]
                            .iter()
                            .find_map(|w| w.strip_prefix(key))
                            .and_then(hex)
                    };
                    if let (Some(a), Some(b)) = (get("_stext="), get("_etext=")) {
                        map.text = (a != 0 && b > a).then_some((a, b));
                    }
                }
                Some("MODULE") if f.len() >= 5 => {
                    let size = f[3].parse().unwrap_or(0);
                    if let Some(base) = hex(f[4]).filter(|b| *b != 0) {
                        map.modules.push((f[2].to_string(), base, size));
                    }
                }
                _ => {}
            }
        }
        map
    }

    /// Where `rip` (at privilege `cpl`) is, in words.
    pub fn place(&self, rip: u64, cpl: u8) -> Place {
        if cpl == 3 {
            return Place::User;
        }
        for (name, base, size) in &self.modules {
            if rip >= *base && rip < base + size {
                let what = format!("{name}+{:#x}", rip - base);
                return if KVM_MODULES.contains(&name.as_str()) {
                    Place::Kvm(what)
                } else {
                    Place::Module(what)
                };
            }
        }
        match self.text {
            Some((start, end)) if rip >= start && rip < end => {
                Place::Kernel(format!("_stext+{:#x}", rip - start))
            }
            // Without the text range nothing can be told apart.
            None => Place::Kernel(format!("{rip:#x} (host kernel range unknown)")),
            Some(_) => Place::Elsewhere,
        }
    }
}

/// Where a host-VM CPU was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In the host VM's kernel (offset from its `_stext`).
    Kernel(String),
    /// In KVM (kvm, kvm_amd, kvm_intel: module+offset).
    Kvm(String),
    /// In another module of the host VM's kernel.
    Module(String),
    /// User space (CPL 3): a host process or the nested guest's.
    User,
    /// Kernel mode outside the host VM's kernel and modules: the nested
    /// guest's kernel (on SVM under TCG, QEMU shows the nested guest's state).
    Elsewhere,
}

impl Place {
    fn nested(&self) -> bool {
        matches!(self, Place::Kvm(_) | Place::Elsewhere)
    }
    fn describe(&self) -> String {
        match self {
            Place::Kernel(s) => format!("host kernel {s}"),
            Place::Kvm(s) => format!("KVM {s}"),
            Place::Module(s) => format!("module {s}"),
            Place::User => "user space".into(),
            Place::Elsewhere => "nested guest kernel (outside the host kernel)".into(),
        }
    }
}

/// The judged state of a host VM.
#[derive(Debug, Clone)]
pub struct HostVmState {
    /// Everything captured, for host-vm-state.txt.
    pub report: String,
    /// One line on what was found.
    pub summary: String,
    /// The evidence says the nested setup failed (not the code under test).
    pub nested_fault: bool,
}

/// Judges what was captured: the QEMU run status, the CPU samples, whether
/// the host VM's user space had stopped beating.
pub fn judge(
    status: Option<&str>,
    samples: &[Vec<CpuSample>],
    map: &HostKernelMap,
    beats: Beats,
) -> (String, bool) {
    match status {
        None => {
            return (
                "the host VM's QEMU does not answer QMP: its main loop is stuck".into(),
                true,
            )
        }
        Some(s @ ("internal-error" | "guest-panicked")) => {
            return (format!("the host VM's QEMU stopped the VM: {s}"), true)
        }
        Some("io-error") => {
            return (
                "the host VM's QEMU paused the VM on a disk write error (io-error): is the outer disk full?".into(),
                false,
            )
        }
        Some("paused") => {
            return (
                "the host VM was paused from outside (QMP stop), not by a fault".into(),
                false,
            )
        }
        _ => {}
    }
    let mut cpus: Vec<u32> = samples.iter().flatten().map(|c| c.cpu).collect();
    cpus.sort_unstable();
    cpus.dedup();
    let mut parts = Vec::new();
    let mut any_stuck_nested = false;
    let mut any_idle = false;
    for cpu in &cpus {
        let seen: Vec<&CpuSample> = samples
            .iter()
            .flat_map(|s| s.iter().filter(|c| c.cpu == *cpu))
            .collect();
        let places: Vec<Place> = seen.iter().map(|c| map.place(c.rip, c.cpl)).collect();
        let halted = seen.iter().filter(|c| c.halted).count();
        let nested = places.iter().filter(|p| p.nested()).count();
        if !seen.is_empty() && nested == seen.len() {
            any_stuck_nested = true;
        }
        if halted == seen.len() && !seen.is_empty() {
            any_idle = true;
        }
        let moving = seen.windows(2).any(|w| w[0].rip != w[1].rip);
        let mut kinds: Vec<String> = places.iter().map(Place::describe).collect();
        kinds.dedup();
        parts.push(format!(
            "CPU{cpu}: {}{} over {} samples ({})",
            if halted == seen.len() {
                "halted"
            } else {
                "busy"
            },
            if moving {
                ", RIP moving"
            } else {
                ", RIP fixed"
            },
            seen.len(),
            kinds.join(" / ")
        ));
    }
    let st = status.unwrap_or("?");
    let cpus_text = if parts.is_empty() {
        "no CPU state".to_string()
    } else {
        parts.join("; ")
    };
    let stopped = beats == Beats::Stopped;
    let nested_fault = stopped && any_stuck_nested && !any_idle;
    let verdict = if nested_fault {
        "the host VM's kernel is not getting its CPUs back from nested virtualisation"
    } else if stopped && any_idle {
        "the host VM idles but its user space stopped beating"
    } else if stopped {
        "the host VM's user space stopped beating; its CPUs are in its own kernel or user space"
    } else if beats == Beats::NeverSeen {
        "the host VM never beat (it did not reach its init)"
    } else {
        "the host VM's user space is alive"
    };
    (format!("{verdict} (QEMU {st}; {cpus_text})"), nested_fault)
}

/// Asks the host VM's QEMU (QMP at `socket`) for its state: run status, then
/// `samples` register dumps of all CPUs `gap` apart, then SysRq-L (the host
/// VM's kernel prints every CPU's backtrace on its console, if it still
/// takes interrupts). Never fails: what could not be had is said.
pub fn capture(
    socket: &Path,
    map: &HostKernelMap,
    beats: Beats,
    samples: usize,
    gap: Duration,
) -> HostVmState {
    let mut report = String::new();
    let qmp = Qmp::connect(socket, Duration::from_secs(10));
    let mut qmp = match qmp {
        Ok(q) => q,
        Err(e) => {
            let _ = writeln!(report, "QMP: {e:#}");
            let (summary, nested_fault) = judge(None, &[], map, beats);
            let _ = writeln!(report, "\nverdict: {summary}");
            return HostVmState {
                report,
                summary,
                nested_fault,
            };
        }
    };
    let status = match qmp.execute("query-status", None) {
        Ok(v) => {
            let _ = writeln!(report, "query-status: {v}");
            v.get("status").and_then(|s| s.as_str()).map(str::to_string)
        }
        Err(e) => {
            let _ = writeln!(report, "query-status: {e:#}");
            None
        }
    };
    let mut all = Vec::new();
    for i in 0..samples {
        if i > 0 {
            std::thread::sleep(gap);
        }
        match qmp.hmp("info registers -a") {
            Ok(text) => {
                let s = parse_registers(&text);
                let _ = writeln!(report, "\n== sample {} ==", i + 1);
                for c in &s {
                    let _ = writeln!(
                        report,
                        "CPU{} RIP={:016x} CPL={} HLT={} -> {}",
                        c.cpu,
                        c.rip,
                        c.cpl,
                        u8::from(c.halted),
                        map.place(c.rip, c.cpl).describe()
                    );
                }
                let _ = writeln!(report, "{text}");
                all.push(s);
            }
            Err(e) => {
                let _ = writeln!(report, "info registers -a: {e:#}");
                break;
            }
        }
    }
    match qmp.hmp("sendkey alt-sysrq-l") {
        Ok(_) => {
            let _ = writeln!(
                report,
                "sent SysRq-L: the host VM's kernel prints its CPUs' backtraces on the host console"
            );
        }
        Err(e) => {
            let _ = writeln!(report, "sendkey alt-sysrq-l: {e:#}");
        }
    }
    let (summary, nested_fault) = judge(status.as_deref(), &all, map, beats);
    let _ = writeln!(report, "\nverdict: {summary}");
    HostVmState {
        report,
        summary,
        nested_fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGS: &str = "CPU#0\nRAX=0000000000000000 RBX=0000000000000001\nRIP=ffffffffc0a2b123 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\nCR0=80050033\nCPU#1\nRIP=ffffffff9a200010 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";

    fn map() -> HostKernelMap {
        let console = "COLINUX-HOST KERNEL _stext=ffffffff9a000000 _etext=ffffffff9a400000 \nCOLINUX-HOST MODULE kvm_amd 155648 0xffffffffc0a20000\nCOLINUX-HOST MODULE tun 61440 0xffffffffc0800000\n";
        HostKernelMap::new(console)
    }

    #[test]
    fn registers_are_read_per_cpu() {
        let s = parse_registers(REGS);
        assert_eq!(
            s,
            vec![
                CpuSample {
                    cpu: 0,
                    rip: 0xffffffffc0a2b123,
                    cpl: 0,
                    halted: false
                },
                CpuSample {
                    cpu: 1,
                    rip: 0xffffffff9a200010,
                    cpl: 0,
                    halted: true
                },
            ]
        );
    }

    #[test]
    fn places_follow_kaslr_and_module_loads() {
        let m = map();
        assert_eq!(
            m.place(0xffffffff9a200010, 0),
            Place::Kernel("_stext+0x200010".into())
        );
        assert_eq!(
            m.place(0xffffffffc0a2b123, 0),
            Place::Kvm("kvm_amd+0xb123".into())
        );
        assert_eq!(
            m.place(0xffffffffc0800010, 0),
            Place::Module("tun+0x10".into())
        );
        assert_eq!(m.place(0x7f00_0000_1000, 3), Place::User);
        // the nested guest's kernel lives at its own (randomized) address
        assert_eq!(m.place(0xffffffffa5000000, 0), Place::Elsewhere);
        // no KERNEL line: nothing is called the nested guest
        let blind = HostKernelMap::new("");
        assert!(matches!(
            blind.place(0xffffffffa5000000, 0),
            Place::Kernel(_)
        ));
    }

    #[test]
    fn only_cpus_held_by_nested_virtualisation_count_as_a_nested_fault() {
        let m = map();
        let stuck = CpuSample {
            cpu: 0,
            rip: 0xffffffffc0a2b123,
            cpl: 0,
            halted: false,
        };
        let guest = CpuSample {
            cpu: 1,
            rip: 0xffffffffa5000000,
            cpl: 0,
            halted: false,
        };
        let idle = CpuSample {
            cpu: 1,
            rip: 0xffffffff9a200010,
            cpl: 0,
            halted: true,
        };
        let spin_kernel = CpuSample {
            cpu: 1,
            rip: 0xffffffff9a200100,
            cpl: 0,
            halted: false,
        };
        let both = vec![vec![stuck.clone(), guest.clone()]; 3];
        let (why, fault) = judge(Some("running"), &both, &m, Beats::Stopped);
        assert!(fault, "{why}");
        assert!(why.contains("nested virtualisation"), "{why}");
        // a VM QEMU paused on a failed disk write is the outer disk's doing
        let (why, fault) = judge(Some("io-error"), &both, &m, Beats::Stopped);
        assert!(!fault, "{why}");
        assert!(why.contains("disk"), "{why}");
        // the same picture while the host VM's user space still beats: not a fault
        assert!(!judge(Some("running"), &both, &m, Beats::Alive).1);
        // one CPU idles: the host VM could run its user space, so no excuse
        let idling = vec![vec![stuck.clone(), idle]; 3];
        let (why, fault) = judge(Some("running"), &idling, &m, Beats::Stopped);
        assert!(!fault, "{why}");
        assert!(why.contains("idles"), "{why}");
        // no CPU in KVM or the nested guest: the host kernel's own trouble
        let own = vec![vec![spin_kernel.clone()]; 3];
        assert!(!judge(Some("running"), &own, &m, Beats::Stopped).1);
        // a CPU that left KVM in one sample was not held by it
        let left_kvm = CpuSample {
            cpu: 0,
            ..spin_kernel.clone()
        };
        let moved = vec![
            vec![stuck.clone(), spin_kernel.clone()],
            vec![left_kvm, spin_kernel],
        ];
        assert!(!judge(Some("running"), &moved, &m, Beats::Stopped).1);
        // QEMU itself gone quiet, or stopped with an error: the outer layer
        assert!(judge(None, &[], &m, Beats::Alive).1);
        assert!(judge(Some("internal-error"), &[], &m, Beats::Alive).1);
        assert!(!judge(Some("running"), &[], &m, Beats::Stopped).1);
        // paused by someone, or never beaten: not excused
        assert!(!judge(Some("paused"), &both, &m, Beats::Stopped).1);
        assert!(!judge(Some("running"), &both, &m, Beats::NeverSeen).1);
    }
}
