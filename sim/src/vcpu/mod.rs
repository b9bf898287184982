//! The simulated vCPU: the world switch between the monitor and a scripted
//! guest program.
//!
//! `run()` is one round trip: complete the previous exit (a read's value lands
//! in RAX, RIP moves past the instruction), check the entry state, deliver
//! queued interrupts, resume the guest program, and return its next exit.
//! The modelled instructions are `in`/`out` (port in DX, data in RAX), `mov`
//! to/from `[rbx]` for MMIO and `hlt`; everything else the program does is
//! plain RAM access and does not exit.

mod exits;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use colinux_driver::hypervisor::{
    CpuIdEntry, FpuState, HypervisorError, LapicState, MsrEntry, Result, SpecialRegisters,
    StandardRegisters, Vcpu, VmExit,
};
use vm_memory::GuestMemoryMmap;

use crate::fault::Fault;
use crate::guest::{GuestCpu, GuestEnd, Request, Resume};
use crate::trace::{Event, ExitKind, Interrupt};
use crate::vm_shared::{GuestOutcome, VmShared};
use crate::world::{self, merge_register};

/// Architectural state of one vCPU, as the monitor reads and writes it.
#[derive(Clone)]
struct CpuState {
    regs: StandardRegisters,
    sregs: SpecialRegisters,
    fpu: FpuState,
    msrs: BTreeMap<u32, u64>,
    cpuid: Vec<CpuIdEntry>,
    lapic: LapicState,
    /// The monitor changed registers since the last exit.
    dirty: bool,
    /// The entry rules have been checked for the current state.
    checked: bool,
    /// Registers as saved at the last exit.
    saved: Option<(StandardRegisters, SpecialRegisters)>,
}

/// What the previous exit still owes the guest.
#[derive(Debug, Clone, Copy)]
enum Owed {
    /// The guest program has not started.
    Start,
    /// Nothing (the guest is running or ended).
    Nothing,
    /// A write completed: move RIP past the instruction.
    Advance(u64),
    /// A read completed: load the monitor's value into RAX, move RIP.
    Read { size: u8, len: u64 },
    /// The guest is halted until an interrupt or `deadline`.
    Halt { deadline: Instant },
}

/// How a halt ended.
enum HaltEnd {
    /// Interrupts arrived (or patience ran out): resume the guest.
    Resume(Vec<Interrupt>, bool),
    /// Give the monitor control back (a kick): the guest stays halted.
    Kick,
}

struct Link {
    tx: SyncSender<Resume>,
    rx: Receiver<Request>,
}

/// A vCPU of a [`crate::vm::SimVm`].
pub struct SimVcpu {
    id: u32,
    vm: Arc<VmShared>,
    state: Mutex<CpuState>,
    link: Option<Link>,
    owed: Owed,
    buf: [u8; 8],
    runs: u64,
    ended: Option<GuestEnd>,
    /// The next entry is a silent re-entry after a kick (not traced).
    quiet_entry: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimVcpu {
    pub(crate) fn new(id: u32, vm: Arc<VmShared>) -> Self {
        SimVcpu {
            id,
            vm,
            state: Mutex::new(CpuState {
                regs: world::reset_regs(),
                sregs: world::reset_sregs(id),
                fpu: FpuState {
                    fcw: 0x37f,
                    mxcsr: 0x1f80,
                    ..Default::default()
                },
                msrs: BTreeMap::new(),
                cpuid: Vec::new(),
                lapic: world::reset_lapic(id),
                dirty: false,
                checked: false,
                saved: None,
            }),
            link: None,
            owed: Owed::Start,
            buf: [0; 8],
            runs: 0,
            ended: None,
            quiet_entry: false,
        }
    }

    /// Number of `run()` calls so far.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// The guest memory this vCPU's VM maps (for tests).
    pub fn memory(&self) -> Option<GuestMemoryMmap> {
        lock(&self.vm.memory).clone()
    }

    /// The CPUID leaves the monitor set.
    pub fn cpuid(&self) -> Vec<CpuIdEntry> {
        lock(&self.state).cpuid.clone()
    }

    fn trace(&self, e: Event) {
        self.vm.trace.push(e);
    }

    /// Saves the state the monitor sees now (checked at the next entry).
    fn save(&self) -> u64 {
        let mut st = lock(&self.state);
        st.saved = Some((st.regs, st.sregs));
        st.regs.rip
    }

    /// A kick while halted: back to the monitor, untraced (it depends on
    /// timing), the guest stays in `hlt`.
    fn kick_exit(&mut self, deadline: Instant) -> VmExit<'static> {
        self.owed = Owed::Halt { deadline };
        self.quiet_entry = true;
        self.save();
        VmExit::Interrupted
    }

    fn exit_event(&self, kind: ExitKind) {
        let rip = self.save();
        self.trace(Event::Exit {
            vcpu: self.id,
            rip,
            kind,
        });
    }

    /// Checks the entry state; `Some(reason)` when the entry is refused.
    fn check_entry(&self) -> Option<u64> {
        let mem = lock(&self.vm.memory).clone();
        let mut st = lock(&self.state);
        let mut rules = Vec::new();
        if let Some((r, s)) = st.saved {
            if !st.dirty && (r != st.regs || s != st.sregs) {
                rules.push("world.restore".to_string());
            }
        }
        if st.dirty || !st.checked {
            rules.extend(
                world::entry_violations(&st.regs, &st.sregs, mem.as_ref())
                    .into_iter()
                    .map(|v| v.to_string()),
            );
        }
        if rules.is_empty() {
            st.checked = true;
            return None;
        }
        drop(st);
        self.trace(Event::EntryRefused {
            vcpu: self.id,
            rules,
        });
        Some(world::FAIL_ENTRY_INVALID_STATE)
    }

    /// Completes what the last exit owes, records the entry; returns the value
    /// of a completed read.
    fn enter(&mut self) -> u64 {
        let mut st = lock(&self.state);
        let mut value = 0;
        match self.owed {
            Owed::Read { size, len } => {
                let n = usize::from(size).min(8);
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&self.buf[..n]);
                value = u64::from_le_bytes(b);
                st.regs.rax = merge_register(st.regs.rax, value, size);
                st.regs.rip = st.regs.rip.wrapping_add(len);
            }
            Owed::Advance(len) => st.regs.rip = st.regs.rip.wrapping_add(len),
            Owed::Start | Owed::Nothing | Owed::Halt { .. } => {}
        }
        let monitor_set = st.dirty;
        st.dirty = false;
        let (rip, rax) = (st.regs.rip, st.regs.rax);
        drop(st);
        if !self.quiet_entry || monitor_set {
            self.trace(Event::Entry {
                vcpu: self.id,
                rip,
                rax,
                monitor_set,
            });
        }
        self.quiet_entry = false;
        value
    }

    fn deliver(&self, irqs: &[Interrupt]) {
        for &irq in irqs {
            self.trace(Event::Deliver { vcpu: self.id, irq });
        }
    }

    fn start_guest(&mut self, program: crate::guest::GuestProgram) {
        let (req_tx, req_rx) = mpsc::sync_channel::<Request>(1);
        let (res_tx, res_rx) = mpsc::sync_channel::<Resume>(1);
        let mem = lock(&self.vm.memory).clone().unwrap_or_default();
        let mut cpu = GuestCpu::new(self.id, mem, self.vm.trace.clone(), req_tx, res_rx);
        let spawned = std::thread::Builder::new()
            .name(format!("sim-guest{}", self.id))
            .spawn(move || {
                if cpu.start().is_err() {
                    return;
                }
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| program(&mut cpu)));
                let end = match r {
                    Ok(Ok(end)) => Ok(end),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(p) => Err(format!("guest program panicked: {}", panic_text(&p))),
                };
                cpu.finish(end);
            });
        match spawned {
            Ok(_) => {
                self.link = Some(Link {
                    tx: res_tx,
                    rx: req_rx,
                })
            }
            Err(e) => {
                self.end_with(Err(format!("cannot spawn the guest thread: {e}")));
            }
        }
    }

    fn end_with(&mut self, end: std::result::Result<GuestEnd, String>) -> GuestEnd {
        let (outcome, how, e) = match end {
            Ok(e) => (GuestOutcome::Ended(e), format!("{e:?}"), e),
            Err(msg) => (
                GuestOutcome::Failed(msg.clone()),
                format!("failed: {msg}"),
                GuestEnd::Shutdown,
            ),
        };
        self.vm.set_outcome(self.id, outcome);
        self.trace(Event::GuestEnd { vcpu: self.id, how });
        self.ended = Some(e);
        self.link = None;
        self.owed = Owed::Nothing;
        e
    }

    fn resume(&mut self, value: u64, irqs: Vec<Interrupt>, timed_out: bool) -> bool {
        let regs = lock(&self.state).regs;
        match &self.link {
            Some(l) => {
                l.tx.send(Resume {
                    value,
                    irqs,
                    regs,
                    timed_out,
                })
                .is_ok()
            }
            None => false,
        }
    }

    /// Blocks (bounded by the halt slice) until an interrupt or the deadline.
    fn halt_wait(&mut self, deadline: Instant) -> HaltEnd {
        let slice_end = Instant::now() + self.vm.config.halt_slice;
        let mut idled = false;
        loop {
            if self.vm.has_irqfds() {
                self.vm.poll_irqfds();
            }
            let irqs = self.vm.take_pending(self.id);
            if !irqs.is_empty() {
                return HaltEnd::Resume(irqs, false);
            }
            if !idled {
                idled = true;
                self.vm.idle();
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return HaltEnd::Resume(Vec::new(), true);
            }
            if now >= slice_end {
                return HaltEnd::Kick;
            }
            let step = if self.vm.has_irqfds() {
                Duration::from_millis(1)
            } else {
                slice_end.min(deadline) - now
            };
            self.vm.wait_pending(self.id, step);
        }
    }

    /// After the program ended: what further runs return.
    fn after_end(&mut self, end: GuestEnd) -> VmExit<'_> {
        match end {
            GuestEnd::Poweroff => VmExit::Poweroff,
            GuestEnd::Reset => VmExit::Reset,
            GuestEnd::Shutdown => VmExit::Shutdown,
            GuestEnd::Idle => {
                std::thread::sleep(self.vm.config.halt_slice);
                VmExit::Interrupted
            }
        }
    }

    fn end_exit(&mut self, end: GuestEnd) -> VmExit<'_> {
        let kind = match end {
            GuestEnd::Poweroff => ExitKind::Poweroff,
            GuestEnd::Reset => ExitKind::Reset,
            GuestEnd::Shutdown => ExitKind::Shutdown,
            GuestEnd::Idle => return self.after_end(end),
        };
        self.exit_event(kind);
        self.after_end(end)
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

impl Vcpu for SimVcpu {
    fn id(&self) -> u32 {
        self.id
    }
    fn get_regs(&self) -> Result<StandardRegisters> {
        Ok(lock(&self.state).regs)
    }
    fn set_regs(&self, regs: &StandardRegisters) -> Result<()> {
        let mut st = lock(&self.state);
        st.regs = *regs;
        st.dirty = true;
        Ok(())
    }
    fn get_sregs(&self) -> Result<SpecialRegisters> {
        Ok(lock(&self.state).sregs)
    }
    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()> {
        let mut st = lock(&self.state);
        st.sregs = *sregs;
        st.dirty = true;
        Ok(())
    }
    fn get_fpu(&self) -> Result<FpuState> {
        Ok(lock(&self.state).fpu)
    }
    fn set_fpu(&self, fpu: &FpuState) -> Result<()> {
        lock(&self.state).fpu = *fpu;
        Ok(())
    }
    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<()> {
        let mut st = lock(&self.state);
        for m in msrs {
            st.msrs.insert(m.index, m.data);
        }
        Ok(())
    }
    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<MsrEntry>> {
        let st = lock(&self.state);
        Ok(indices
            .iter()
            .map(|&index| MsrEntry {
                index,
                data: st.msrs.get(&index).copied().unwrap_or(0),
                ..Default::default()
            })
            .collect())
    }
    fn set_cpuid(&self, entries: &[CpuIdEntry]) -> Result<()> {
        lock(&self.state).cpuid = entries.to_vec();
        Ok(())
    }
    fn get_lapic(&self) -> Result<LapicState> {
        Ok(lock(&self.state).lapic)
    }
    fn set_lapic(&self, lapic: &LapicState) -> Result<()> {
        lock(&self.state).lapic = *lapic;
        Ok(())
    }

    fn run(&mut self) -> Result<VmExit<'_>> {
        self.runs += 1;
        if let Some(end) = self.ended {
            return Ok(self.after_end(end));
        }
        let fault = lock(&self.vm.faults).take(self.id, self.runs);
        if let Some(f) = fault {
            self.trace(Event::Fault {
                vcpu: self.id,
                what: format!("{f:?} at run {}", self.runs),
            });
            return match f {
                Fault::Interrupted => {
                    self.exit_event(ExitKind::Interrupted);
                    Ok(VmExit::Interrupted)
                }
                Fault::SpuriousHalt => {
                    self.exit_event(ExitKind::Halt);
                    Ok(VmExit::Halt)
                }
                Fault::RunError(errno) => {
                    self.exit_event(ExitKind::RunError);
                    Err(HypervisorError::op(
                        "KVM_RUN",
                        std::io::Error::from_raw_os_error(errno),
                    ))
                }
            };
        }
        if let Some(reason) = self.check_entry() {
            self.exit_event(ExitKind::FailEntry { reason });
            return Ok(VmExit::FailEntry { reason });
        }
        let owed = self.owed;
        let value = self.enter();
        self.owed = Owed::Nothing;
        let irqs = self.vm.take_pending(self.id);
        if !matches!(owed, Owed::Halt { .. }) {
            self.deliver(&irqs);
        }
        match owed {
            Owed::Start => match self.vm.take_program(self.id) {
                Some(p) => {
                    self.start_guest(p);
                    if !self.resume(0, irqs, false) {
                        let e = self.end_with(Err("the guest thread did not start".into()));
                        return Ok(self.end_exit(e));
                    }
                }
                None => {
                    // An application processor waiting for INIT/SIPI: idles.
                    self.ended = Some(GuestEnd::Idle);
                    return Ok(self.after_end(GuestEnd::Idle));
                }
            },
            Owed::Halt { deadline } => {
                let (irqs, timed_out) = if irqs.is_empty() {
                    match self.halt_wait(deadline) {
                        HaltEnd::Resume(i, t) => (i, t),
                        HaltEnd::Kick => return Ok(self.kick_exit(deadline)),
                    }
                } else {
                    (irqs, false)
                };
                self.deliver_after_halt(&irqs);
                if !self.resume(0, irqs, timed_out) {
                    let e = self.end_with(Err("the guest thread vanished".into()));
                    return Ok(self.end_exit(e));
                }
            }
            _ => {
                if !self.resume(value, irqs, false) {
                    let e = self.end_with(Err("the guest thread vanished".into()));
                    return Ok(self.end_exit(e));
                }
            }
        }
        self.next_exit()
    }
}
