//! The virtual machine monitor loop: assemble the machine from a
//! [`colinux_conf::Config`], boot the kernel on KVM, serve its devices and end
//! cleanly.
//!
//! Ending: guest `poweroff` (ACPI S5 through the FADT sleep-control port) ends
//! the daemon with status 0 and a message. Guest `reboot` (ACPI reset
//! register, i8042 0xFE, or a KVM reset event) boots the guest again in the
//! same daemon, as classic coLinux did (`--on-reboot=restart`, the default):
//! same configuration, cobd files, console, `ttysN` host ports and `execN`
//! programs; the kernel and initrd loaded again into fresh RAM, new vCPUs and
//! devices (network backends re-created). [`reboot::REBOOT_LIMIT`] reboots
//! within a minute stop the daemon with an error. `--on-reboot=exit` ends the
//! daemon with status 0 on a reboot instead.
//! SIGINT/SIGTERM stop the guest and exit 0. A triple fault or an exit the
//! daemon cannot handle ends it with an error carrying the registers and the
//! code at RIP (a `Code:` line as in a kernel oops).

pub mod cmdline;
pub mod console;
pub mod devices;
pub mod diagnostics;
pub mod doorbells;
pub mod exec;
pub mod exit_log;
pub mod exit_stats;
pub mod interrupts;
pub mod machine;
pub mod reboot;
pub mod screen;
pub mod terminal;
pub mod timing;
pub mod ttys;
pub mod vcpu;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use colinux_conf::Config;
use colinux_driver::hypervisor::kvm::probe_host;

use crate::cli::{OnReboot, RunOptions};
pub use machine::MachineSpec;
pub use vcpu::MachineEvent;

/// How a run of the daemon ended (a successful one): what the guest did, or
/// the signal that stopped it. (Not `colinux_sim::guest::GuestEnd`, which is
/// how a scripted sim guest program ends.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest powered off.
    Poweroff,
    /// The guest rebooted (and `--on-reboot=exit` ends the daemon).
    Reboot,
    /// A signal stopped the guest.
    Signal(i32),
}

static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// The host's RAM in MiB (from /proc/meminfo; 1 GiB if unreadable).
pub fn host_mem_mib() -> u64 {
    let host_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(1 << 20);
    host_kib / 1024
}

/// Boots the guest described by `config` and serves it until it ends.
pub fn run(config: &Config, options: &RunOptions) -> Result<RunEnd> {
    if let Some(why) = probe_host().explain() {
        bail!("{why}");
    }
    let spec = MachineSpec::from_config(config, options)?;
    // The pid file is written once the vCPUs run (console_server::vm_up).
    let result = run_session(&spec, options);
    if let Some(pidfile) = &options.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    result
}

/// What lives across reboots in place: the `ttysN` host ports and the
/// `execN` programs (started after the first boot's vCPUs; dropping the
/// session stops them).
#[derive(Default)]
pub struct Session {
    ttys: ttys::HostPorts,
    exec: Option<exec::Programs>,
}

/// Boots the machine, again after each guest reboot (`--on-reboot=restart`)
/// until it powers off, a signal stops it, it reboots in a loop or fails.
pub fn run_session(spec: &MachineSpec, options: &RunOptions) -> Result<RunEnd> {
    let mut session = Session {
        ttys: ttys::HostPorts::open(&spec.config, options.pidfile.as_deref())?,
        exec: None,
    };
    let mut guard = reboot::RebootGuard::default();
    loop {
        let end = run_spec(spec, options, &mut session)?;
        if end != RunEnd::Reboot {
            return Ok(end);
        }
        if options.on_reboot == OnReboot::Exit {
            eprintln!("colinux-daemon: guest rebooted; the daemon exits (--on-reboot=exit)");
            return Ok(end);
        }
        match guard.record(std::time::Instant::now()) {
            Ok(n) => {
                tracing::info!("guest rebooted; booting again ({n} in the last minute)");
            }
            Err(n) => bail!(
                "the guest rebooted {n} times within {} s, a reboot loop; stopping \
                 (fix the guest, or run with --on-reboot=exit)",
                reboot::REBOOT_WINDOW.as_secs()
            ),
        }
    }
}

/// Boots a machine from an explicit spec, once: a guest reboot returns
/// [`RunEnd::Reboot`]. `session` holds what survives a reboot.
pub fn run_spec(spec: &MachineSpec, options: &RunOptions, session: &mut Session) -> Result<RunEnd> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        vmm_sys_util::signal::register_signal_handler(sig, on_stop_signal)
            .map_err(|e| anyhow::anyhow!("installing a handler for signal {sig}: {e}"))?;
    }
    vcpu::install_kick_handler().context("installing the vCPU kick handler")?;

    let started = std::time::Instant::now();
    let (tx, rx) = mpsc::channel();
    let out = console::ConsoleOut::default();
    let mut m = machine::Machine::build(spec, tx.clone(), out.clone())?;
    let serial_in = m.serial.clone();
    let keyboard = m.keyboard.clone();
    let _console_link = crate::console_server::link_vm(
        &out,
        crate::console_server::VmConsole {
            serial_input: Arc::new(move |b: &[u8]| {
                let mut s = serial_in.lock().unwrap_or_else(|e| e.into_inner());
                s.enqueue_input(b)
            }),
            keys: Arc::new(move |b: &[u8]| {
                let mut k = keyboard.lock().unwrap_or_else(|e| e.into_inner());
                k.send_keys(b)
            }),
            screen: Arc::new(m.screen_source()),
        },
    );
    session.ttys.attach(&m.vm, &mut m.pio)?;

    let stop = Arc::new(AtomicBool::new(false));
    let ticker = console::ticker(out.clone(), stop.clone());
    let _raw = if !options.detach {
        let serial = m.serial.clone();
        console::spawn_input(
            move |bytes| {
                serial
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .enqueue_input(bytes)
            },
            stop.clone(),
        );
        Some(terminal::RawTerminal::enter())
    } else {
        None
    };
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        terminal::restore_terminal();
        prev_hook(info);
    }));

    let handles = m.start(stop.clone(), options.exit_stats)?;
    tracing::info!(
        run_ms = started.elapsed().as_millis() as u64,
        since_exec_ms = timing::process_age_ms(),
        "vCPUs started"
    );
    crate::console_server::vm_up(options.pidfile.as_deref());
    if session.exec.is_none() {
        match exec::Programs::start(&spec.config) {
            Ok(p) => session.exec = Some(p),
            Err(e) => {
                machine::stop_vcpus(&stop, handles);
                terminal::restore_terminal();
                return Err(e);
            }
        }
    }
    let has_pci_devices = !spec.config.block_devices.is_empty() || !spec.config.network.is_empty();
    let poller = has_pci_devices.then(|| {
        devices::spawn_device_poller(m.pci.clone(), Some(m.doorbells.clone()), stop.clone())
    });
    let event = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(ev) => break ev,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let sig = SIGNALLED.swap(0, Ordering::SeqCst);
                if sig != 0 {
                    break MachineEvent::Signal(sig);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break MachineEvent::Fatal {
                    vcpu: 0,
                    report: "all vCPU threads ended without a reason".into(),
                }
            }
        }
    };
    machine::stop_vcpus(&stop, handles);
    if let Some(p) = poller {
        p.join().ok();
    }
    // A console writer stuck on a stalled stdout must not keep the daemon from
    // exiting: give it a moment, then leave it.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !ticker.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if ticker.is_finished() {
        ticker.join().ok();
        out.flush_now();
    }
    drop(_raw);
    terminal::restore_terminal();

    match event {
        MachineEvent::Poweroff => {
            eprintln!("colinux-daemon: guest powered off");
            Ok(RunEnd::Poweroff)
        }
        MachineEvent::Reset => Ok(RunEnd::Reboot),
        MachineEvent::Signal(sig) => {
            eprintln!("colinux-daemon: stopped the guest on signal {sig}");
            Ok(RunEnd::Signal(sig))
        }
        MachineEvent::TripleFault { report, .. } | MachineEvent::Fatal { report, .. } => {
            bail!("the guest stopped: {report}")
        }
    }
}
