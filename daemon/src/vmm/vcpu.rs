//! One thread per vCPU: run the guest, dispatch port I/O and MMIO exits to the
//! buses, and report how the vCPU ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use colinux_devices::bus::Bus;
use colinux_driver::hypervisor::{self, Vcpu, VmExit};
use vm_memory::GuestMemoryMmap;

use super::diagnostics;
use super::exit_log::{ExitLog, ExitRecord};
use super::exit_stats::{ExitKey, ExitStats};

/// Why the machine stops (sent to the main thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// The guest powered off.
    Poweroff,
    /// The guest asked for a reset (reboot).
    Reset,
    /// The guest triple-faulted on vCPU `vcpu`; `report` has registers and code.
    TripleFault {
        /// vCPU index.
        vcpu: u32,
        /// Registers and the code at RIP.
        report: String,
    },
    /// An exit the daemon cannot handle.
    Fatal {
        /// vCPU index.
        vcpu: u32,
        /// What happened, with registers and code.
        report: String,
    },
    /// A host signal asked the daemon to stop.
    Signal(i32),
}

/// The signal used to kick vCPU threads out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn noop_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the no-op handler for [`kick_signal`] (so the signal only interrupts
/// `KVM_RUN` with `EINTR`).
pub fn install_kick_handler() -> std::io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), noop_handler)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// Everything a vCPU thread needs.
pub struct VcpuContext {
    /// The vCPU.
    pub vcpu: Box<dyn Vcpu>,
    /// Port I/O devices.
    pub pio: Bus,
    /// MMIO devices.
    pub mmio: Bus,
    /// Guest RAM (for diagnostics).
    pub memory: GuestMemoryMmap,
    /// Set when the machine is stopping.
    pub stop: Arc<AtomicBool>,
    /// Where to report the end.
    pub events: Sender<MachineEvent>,
    /// `--exit-stats`: count exits by place and print them when the vCPU stops.
    pub exit_stats: bool,
}

fn report(ctx: &VcpuContext, exits: &ExitLog, what: &str) -> String {
    let mut s = format!("{what}\n");
    match (ctx.vcpu.get_regs(), ctx.vcpu.get_sregs()) {
        (Ok(r), Ok(sr)) => s.push_str(&diagnostics::report(&ctx.memory, &r, &sr)),
        (Err(e), _) | (_, Err(e)) => s.push_str(&format!("  (registers unavailable: {e})\n")),
    }
    s.push_str(&exits.describe());
    s
}

/// Runs the vCPU until the machine stops or the vCPU ends it; with
/// `--exit-stats`, prints where its exits went.
pub fn run(mut ctx: VcpuContext) {
    let id = ctx.vcpu.id();
    let mut stats = ctx.exit_stats.then(ExitStats::new);
    run_loop(&mut ctx, stats.as_mut());
    if let Some(st) = stats {
        eprint!("{}", st.report(id));
    }
}

/// The exit of `event`, as counted by `--exit-stats`.
fn exit_key(event: &hypervisor::Result<VmExit<'_>>) -> Option<ExitKey> {
    Some(match event {
        Ok(VmExit::IoIn { port, .. }) => ExitKey::PortIn(*port),
        Ok(VmExit::IoOut { port, .. }) => ExitKey::PortOut(*port),
        Ok(VmExit::MmioRead { addr, .. }) => ExitKey::mmio_read(*addr),
        Ok(VmExit::MmioWrite { addr, .. }) => ExitKey::mmio_write(*addr),
        Ok(VmExit::Halt) => ExitKey::Halt,
        Ok(VmExit::Interrupted) => ExitKey::Interrupted,
        _ => return None,
    })
}

fn run_loop(ctx: &mut VcpuContext, mut stats: Option<&mut ExitStats>) {
    let id = ctx.vcpu.id();
    let mut exits = ExitLog::new();
    loop {
        if ctx.stop.load(Ordering::Acquire) {
            return;
        }
        let exit = ctx.vcpu.run();
        let counted = match (stats.as_deref_mut(), exit_key(&exit)) {
            (Some(st), Some(k)) => Some((k, st.time_this_one().then(Instant::now))),
            _ => None,
        };
        let event = match exit {
            Ok(VmExit::IoIn { port, data }) => {
                exits.push(ExitRecord::IoIn {
                    port,
                    len: data.len() as u8,
                });
                if !ctx.pio.read(u64::from(port), data) {
                    colinux_devices::guest_log!(trace, vcpu = id, port, "unhandled port read");
                }
                None
            }
            Ok(VmExit::IoOut { port, data }) => {
                exits.push(ExitRecord::io_out(port, data));
                if !ctx.pio.write(u64::from(port), data) {
                    colinux_devices::guest_log!(
                        trace,
                        vcpu = id,
                        port,
                        ?data,
                        "unhandled port write"
                    );
                }
                None
            }
            Ok(VmExit::MmioRead { addr, data }) => {
                exits.push(ExitRecord::MmioRead {
                    addr,
                    len: data.len() as u8,
                });
                if !ctx.mmio.read(addr, data) {
                    colinux_devices::guest_log!(trace, vcpu = id, addr, "unhandled MMIO read");
                }
                None
            }
            Ok(VmExit::MmioWrite { addr, data }) => {
                exits.push(ExitRecord::mmio_write(addr, data));
                if !ctx.mmio.write(addr, data) {
                    colinux_devices::guest_log!(trace, vcpu = id, addr, "unhandled MMIO write");
                }
                None
            }
            Ok(VmExit::Interrupted) => {
                exits.push(ExitRecord::Other("KVM_RUN interrupted (signal)"));
                None
            }
            Ok(VmExit::Halt) => {
                exits.push(ExitRecord::Other("hlt"));
                None
            }
            Ok(VmExit::Reset) => Some(MachineEvent::Reset),
            Ok(VmExit::Poweroff) => Some(MachineEvent::Poweroff),
            Ok(VmExit::Shutdown) => Some(MachineEvent::TripleFault {
                vcpu: id,
                report: report(
                    ctx,
                    &exits,
                    &format!("vCPU {id}: triple fault (CPU shutdown)"),
                ),
            }),
            Ok(VmExit::FailEntry { reason }) => Some(MachineEvent::Fatal {
                vcpu: id,
                report: report(
                    ctx,
                    &exits,
                    &format!("vCPU {id}: hardware refused to enter the guest (reason {reason:#x})"),
                ),
            }),
            Ok(VmExit::InternalError { suberror }) => Some(MachineEvent::Fatal {
                vcpu: id,
                report: report(
                    ctx,
                    &exits,
                    &format!("vCPU {id}: hypervisor internal error (suberror {suberror})"),
                ),
            }),
            Ok(VmExit::Unknown(what)) => Some(MachineEvent::Fatal {
                vcpu: id,
                report: report(ctx, &exits, &format!("vCPU {id}: unexpected exit {what}")),
            }),
            Err(e) => Some(MachineEvent::Fatal {
                vcpu: id,
                report: report(ctx, &exits, &format!("vCPU {id}: {e}")),
            }),
        };
        if let (Some(st), Some((key, t0))) = (stats.as_deref_mut(), counted) {
            let timed = t0.map(|t0| {
                let now = Instant::now();
                (now - t0, now)
            });
            st.record(key, timed);
        }
        if let Some(ev) = event {
            let _ = ctx.events.send(ev);
            return;
        }
    }
}
