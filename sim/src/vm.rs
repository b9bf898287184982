//! The `sim` backend of the driver's [`Hypervisor`] and [`Vm`] traits.
//!
//! Guest memory is the real `GuestMemoryMmap` the monitor allocates (the VM
//! keeps a clone, as KVM keeps the mapping); the vCPUs run scripted guest
//! programs ([`crate::guest`]); the interrupt controller queues MSI messages and
//! line assertions per destination vCPU, in order, and records each in the
//! shared [`Trace`].

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use colinux_devices::interrupt::InterruptSink;
use colinux_driver::hypervisor::{
    CpuIdEntry, DataMatch, GsiRoute, Hypervisor, HypervisorError, IoEventAddress, Result, Vcpu, Vm,
};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::fault::FaultPlan;
use crate::guest::{GuestEnd, GuestProgram};
use crate::trace::{Event, Interrupt, Trace};
use crate::vcpu::SimVcpu;

/// Timing limits of the simulation (all bounds, so nothing can hang).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Longest a vCPU waits for its guest program's next instruction before
    /// `run()` fails (a guest stuck computing).
    pub step_timeout: Duration,
    /// Longest a halted vCPU blocks inside `run()` before returning to the
    /// monitor (so the monitor can notice its stop flag), as a kick would.
    pub halt_slice: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            step_timeout: Duration::from_secs(20),
            halt_slice: Duration::from_millis(20),
        }
    }
}

/// How a vCPU's guest program ended, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The program returned this end.
    Ended(GuestEnd),
    /// The program returned an error, or panicked; the message.
    Failed(String),
}

/// Host work to do while every guest is halted (e.g. let a device pull frames
/// from its backend): the simulated "I/O thread". Runs on the vCPU's thread.
pub type IdleHook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub(crate) struct IrqState {
    pending: BTreeMap<u32, VecDeque<Interrupt>>,
    lines: BTreeMap<u32, bool>,
}

pub(crate) struct VmShared {
    pub(crate) config: SimConfig,
    pub(crate) trace: Trace,
    pub(crate) memory: Mutex<Option<GuestMemoryMmap>>,
    irq: Mutex<IrqState>,
    irq_cv: Condvar,
    programs: Mutex<BTreeMap<u32, GuestProgram>>,
    pub(crate) faults: Mutex<FaultPlan>,
    idle_hook: Mutex<Option<IdleHook>>,
    ioevents: Mutex<Vec<(EventFd, IoEventAddress, DataMatch)>>,
    irqfds: Mutex<Vec<(EventFd, u32)>>,
    routes: Mutex<Vec<GsiRoute>>,
    outcomes: Mutex<BTreeMap<u32, GuestOutcome>>,
    irqchip: AtomicBool,
    pit: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VmShared {
    /// Queues `irq` for vCPU `dest` and wakes halted vCPUs.
    fn queue(&self, dest: u32, irq: Interrupt) {
        lock(&self.irq)
            .pending
            .entry(dest)
            .or_default()
            .push_back(irq);
        self.irq_cv.notify_all();
    }

    fn inject_msi(&self, address: u64, data: u32) -> io::Result<()> {
        let irq = Interrupt::Msi { address, data };
        {
            let mut f = lock(&self.faults);
            if f.failing_msis > 0 {
                f.failing_msis -= 1;
                self.trace.push(Event::Dropped {
                    irq,
                    why: "injected delivery failure".into(),
                });
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        if address & 0xfff0_0000 != 0xfee0_0000 {
            self.trace.push(Event::Dropped {
                irq,
                why: "address outside the APIC window".into(),
            });
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.trace.push(Event::Inject(irq));
        self.queue(((address >> 12) & 0xff) as u32, irq);
        Ok(())
    }

    fn line(&self, irq: u32, level: bool) {
        let was = {
            let mut s = lock(&self.irq);
            s.lines.insert(irq, level).unwrap_or(false)
        };
        if level && !was {
            let i = Interrupt::Line { irq };
            self.trace.push(Event::Inject(i));
            self.queue(0, i);
        } else if !level && was {
            self.trace.push(Event::LineLow { irq });
        }
    }

    /// Takes every interrupt queued for `vcpu`, oldest first.
    pub(crate) fn take_pending(&self, vcpu: u32) -> Vec<Interrupt> {
        lock(&self.irq)
            .pending
            .get_mut(&vcpu)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Blocks up to `timeout` for an interrupt for `vcpu`; true if one is queued.
    pub(crate) fn wait_pending(&self, vcpu: u32, timeout: Duration) -> bool {
        let s = lock(&self.irq);
        let has = |s: &IrqState| s.pending.get(&vcpu).is_some_and(|q| !q.is_empty());
        if has(&s) {
            return true;
        }
        let (s, _) = self
            .irq_cv
            .wait_timeout_while(s, timeout, |s| !has(s))
            .unwrap_or_else(|e| e.into_inner());
        has(&s)
    }

    /// Runs the idle hook, if any.
    pub(crate) fn idle(&self) {
        let hook = lock(&self.idle_hook).clone();
        if let Some(h) = hook {
            h();
        }
    }

    /// Signals every irqfd that has been written (polled without blocking).
    pub(crate) fn poll_irqfds(&self) {
        let fired: Vec<u32> = lock(&self.irqfds)
            .iter()
            .filter(|(fd, _)| readable(fd))
            .filter_map(|(fd, gsi)| fd.read().ok().map(|_| *gsi))
            .collect();
        for gsi in fired {
            let route = lock(&self.routes).iter().copied().find(|r| match r {
                GsiRoute::Irqchip { gsi: g, .. } | GsiRoute::Msi { gsi: g, .. } => *g == gsi,
            });
            match route {
                Some(GsiRoute::Msi { address, data, .. }) => {
                    let _ = self.inject_msi(address, data);
                }
                _ => {
                    self.line(gsi, true);
                    self.line(gsi, false);
                }
            }
        }
    }

    /// Whether a guest write of `value` (`size` bytes) at `addr` hits an
    /// ioeventfd; signals it if so.
    pub(crate) fn ioevent(&self, addr: IoEventAddress, size: u8, value: u64) -> bool {
        let evs = lock(&self.ioevents);
        let hit = evs.iter().find(|(_, a, m)| {
            *a == addr
                && match m {
                    DataMatch::Any => true,
                    DataMatch::U16(v) => size == 2 && value as u16 == *v,
                    DataMatch::U32(v) => size == 4 && value as u32 == *v,
                }
        });
        match hit {
            Some((fd, _, _)) => {
                let _ = fd.write(1);
                true
            }
            None => false,
        }
    }

    pub(crate) fn take_program(&self, id: u32) -> Option<GuestProgram> {
        lock(&self.programs).remove(&id)
    }

    pub(crate) fn set_outcome(&self, id: u32, o: GuestOutcome) {
        lock(&self.outcomes).insert(id, o);
    }

    pub(crate) fn has_irqchip(&self) -> bool {
        self.irqchip.load(Ordering::Relaxed)
    }

    pub(crate) fn has_irqfds(&self) -> bool {
        !lock(&self.irqfds).is_empty()
    }
}

fn readable(fd: &EventFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// A simulated VM.
#[derive(Clone)]
pub struct SimVm {
    shared: Arc<VmShared>,
}

impl SimVm {
    /// An empty VM with its own trace.
    pub fn new(config: SimConfig) -> Self {
        Self::with_trace(config, Trace::new())
    }

    /// An empty VM recording into `trace`.
    pub fn with_trace(config: SimConfig, trace: Trace) -> Self {
        SimVm {
            shared: Arc::new(VmShared {
                config,
                trace,
                memory: Mutex::new(None),
                irq: Mutex::new(IrqState::default()),
                irq_cv: Condvar::new(),
                programs: Mutex::new(BTreeMap::new()),
                faults: Mutex::new(FaultPlan::default()),
                idle_hook: Mutex::new(None),
                ioevents: Mutex::new(Vec::new()),
                irqfds: Mutex::new(Vec::new()),
                routes: Mutex::new(Vec::new()),
                outcomes: Mutex::new(BTreeMap::new()),
                irqchip: AtomicBool::new(false),
                pit: AtomicBool::new(false),
            }),
        }
    }

    /// The boundary trace.
    pub fn trace(&self) -> &Trace {
        &self.shared.trace
    }

    /// Sets the program vCPU `id` runs (before the vCPU is created). A vCPU
    /// without a program idles (an application processor waiting for SIPI).
    pub fn set_program(&self, id: u32, program: GuestProgram) {
        lock(&self.shared.programs).insert(id, program);
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        *lock(&self.shared.faults) = plan;
    }

    /// The fault plan as it stands (injected faults are removed from it).
    pub fn faults(&self) -> FaultPlan {
        lock(&self.shared.faults).clone()
    }

    /// Sets the host work run when a guest halts with nothing to deliver.
    pub fn set_idle_hook(&self, hook: IdleHook) {
        *lock(&self.shared.idle_hook) = Some(hook);
    }

    /// How vCPU `id`'s program ended, once it has.
    pub fn outcome(&self, id: u32) -> Option<GuestOutcome> {
        lock(&self.shared.outcomes).get(&id).cloned()
    }

    /// Whether the monitor created the in-kernel irqchip and PIT.
    pub fn devices_created(&self) -> (bool, bool) {
        (
            self.shared.irqchip.load(Ordering::Relaxed),
            self.shared.pit.load(Ordering::Relaxed),
        )
    }

    /// The memory the monitor gave the VM.
    pub fn memory(&self) -> Option<GuestMemoryMmap> {
        lock(&self.shared.memory).clone()
    }

    /// Creates vCPU `id` with its concrete type (the trait method boxes it).
    pub fn create_sim_vcpu(&self, id: u32) -> SimVcpu {
        SimVcpu::new(id, self.shared.clone())
    }
}

fn dup(fd: &EventFd) -> Result<EventFd> {
    fd.try_clone()
        .map_err(|e| HypervisorError::op("dup eventfd", e))
}

impl Vm for SimVm {
    fn set_memory(&self, memory: &GuestMemoryMmap) -> Result<()> {
        *lock(&self.shared.memory) = Some(memory.clone());
        Ok(())
    }
    fn create_irqchip(&self) -> Result<()> {
        self.shared.irqchip.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn create_pit(&self) -> Result<()> {
        self.shared.pit.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        Ok(Box::new(self.create_sim_vcpu(id)))
    }
    fn signal_msi(&self, address: u64, data: u32) -> Result<()> {
        self.shared
            .inject_msi(address, data)
            .map_err(|e| HypervisorError::op("KVM_SIGNAL_MSI", e))
    }
    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()> {
        self.shared.line(irq, level);
        Ok(())
    }
    fn set_gsi_routes(&self, routes: &[GsiRoute]) -> Result<()> {
        *lock(&self.shared.routes) = routes.to_vec();
        Ok(())
    }
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        lock(&self.shared.irqfds).push((dup(fd)?, gsi));
        Ok(())
    }
    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        let mut v = lock(&self.shared.irqfds);
        let before = v.len();
        v.retain(|(f, g)| !(*g == gsi && same_file(f, fd)));
        if v.len() == before {
            return Err(HypervisorError::Unsupported(format!(
                "no irqfd for GSI {gsi}"
            )));
        }
        Ok(())
    }
    fn register_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()> {
        lock(&self.shared.ioevents).push((dup(fd)?, addr, datamatch));
        Ok(())
    }
    fn unregister_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()> {
        let mut v = lock(&self.shared.ioevents);
        let before = v.len();
        v.retain(|(f, a, m)| !(*a == addr && *m == datamatch && same_file(f, fd)));
        if v.len() == before {
            return Err(HypervisorError::Unsupported(format!(
                "no ioeventfd at {addr:?}"
            )));
        }
        Ok(())
    }
}

/// Whether two descriptors name the same open file (dup'd eventfds differ in
/// number but share the inode).
fn same_file(a: &EventFd, b: &EventFd) -> bool {
    let ino = |fd: &EventFd| {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstat writes into `st`, a properly sized buffer we own.
        let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
        // SAFETY: fstat succeeded, so `st` is initialised.
        (r == 0).then(|| unsafe { st.assume_init() }.st_ino)
    };
    ino(a).is_some() && ino(a) == ino(b)
}

/// Delivers device interrupts into a [`SimVm`] (what the daemon's KVM-backed
/// sink does with `KVM_SIGNAL_MSI` / `KVM_IRQ_LINE`).
impl InterruptSink for SimVm {
    fn send_msi(&self, address: u64, data: u32) -> io::Result<()> {
        self.shared.inject_msi(address, data)
    }
    fn set_irq_line(&self, irq: u32, level: bool) -> io::Result<()> {
        self.shared.line(irq, level);
        Ok(())
    }
}

/// The simulated hypervisor: creates [`SimVm`]s that share one trace and take
/// the guest programs registered here.
pub struct SimHypervisor {
    config: SimConfig,
    trace: Trace,
    programs: Mutex<BTreeMap<u32, GuestProgram>>,
    faults: Mutex<FaultPlan>,
    vms: Mutex<Vec<SimVm>>,
}

impl SimHypervisor {
    /// A hypervisor with these limits.
    pub fn new(config: SimConfig) -> Self {
        SimHypervisor {
            config,
            trace: Trace::new(),
            programs: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(FaultPlan::default()),
            vms: Mutex::new(Vec::new()),
        }
    }

    /// Registers the program vCPU `id` of the next VM runs.
    pub fn set_program(&self, id: u32, program: GuestProgram) {
        lock(&self.programs).insert(id, program);
    }

    /// The fault plan the next VM starts with.
    pub fn set_faults(&self, plan: FaultPlan) {
        *lock(&self.faults) = plan;
    }

    /// The trace every VM of this hypervisor records into.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The `n`th VM created (typed handle).
    pub fn vm(&self, n: usize) -> Option<SimVm> {
        lock(&self.vms).get(n).cloned()
    }
}

impl Hypervisor for SimHypervisor {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn create_vm(&self) -> Result<Arc<dyn Vm>> {
        let vm = SimVm::with_trace(self.config, self.trace.clone());
        for (id, p) in std::mem::take(&mut *lock(&self.programs)) {
            vm.set_program(id, p);
        }
        vm.set_faults(std::mem::take(&mut *lock(&self.faults)));
        lock(&self.vms).push(vm.clone());
        Ok(Arc::new(vm))
    }
    fn supported_cpuid(&self) -> Result<Vec<CpuIdEntry>> {
        Ok(crate::world::supported_cpuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_routing_lines_and_refusals_are_traced() {
        let vm = SimVm::new(SimConfig::default());
        vm.send_msi(0xfee0_1000, 0x51).unwrap();
        vm.send_msi(0xfee0_0000, 0x52).unwrap();
        assert!(vm.send_msi(0xdead_0000, 0x53).is_err());
        vm.set_faults(FaultPlan::new().failing_msis(1));
        assert!(vm.send_msi(0xfee0_0000, 0x54).is_err());
        InterruptSink::set_irq_line(&vm, 5, true).unwrap();
        InterruptSink::set_irq_line(&vm, 5, true).unwrap();
        InterruptSink::set_irq_line(&vm, 5, false).unwrap();
        let s = &vm.shared;
        assert_eq!(
            s.take_pending(0),
            vec![
                Interrupt::Msi {
                    address: 0xfee0_0000,
                    data: 0x52
                },
                Interrupt::Line { irq: 5 }
            ]
        );
        assert_eq!(
            s.take_pending(1),
            vec![Interrupt::Msi {
                address: 0xfee0_1000,
                data: 0x51
            }]
        );
        let t = vm.trace().render();
        assert!(
            t.contains("dropped msi addr=0xdead0000 data=0x53: address outside the APIC window")
        );
        assert!(t.contains("dropped msi addr=0xfee00000 data=0x54: injected delivery failure"));
        assert_eq!(t.matches("inject line irq=5").count(), 1, "one edge: {t}");
        assert!(t.contains("line irq=5 low"));
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever mix of messages and line edges arrives, each vCPU gets its
        /// interrupts exactly once, in arrival order.
        #[test]
        fn interrupts_arrive_in_order(seq in prop::collection::vec((0u8..3, 0u32..4, any::<u8>()), 0..64)) {
            let vm = SimVm::new(SimConfig::default());
            let mut want: BTreeMap<u32, Vec<Interrupt>> = BTreeMap::new();
            let mut level: BTreeMap<u32, bool> = BTreeMap::new();
            for &(kind, n, v) in &seq {
                match kind {
                    0 => {
                        let address = 0xfee0_0000 | (u64::from(n % 2) << 12);
                        vm.send_msi(address, u32::from(v)).unwrap();
                        want.entry(n % 2).or_default().push(Interrupt::Msi { address, data: u32::from(v) });
                    }
                    k => {
                        let up = k == 1;
                        InterruptSink::set_irq_line(&vm, n, up).unwrap();
                        let was = level.insert(n, up).unwrap_or(false);
                        if up && !was {
                            want.entry(0).or_default().push(Interrupt::Line { irq: n });
                        }
                    }
                }
            }
            for cpu in 0..2 {
                prop_assert_eq!(vm.shared.take_pending(cpu), want.remove(&cpu).unwrap_or_default());
                prop_assert!(vm.shared.take_pending(cpu).is_empty());
            }
        }
    }
}
