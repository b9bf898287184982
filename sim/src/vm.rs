//! The `sim` backend of the driver's [`Hypervisor`] and [`Vm`] traits.
//!
//! Guest memory is the real `GuestMemoryMmap` the monitor allocates (the VM
//! keeps a clone, as KVM keeps the mapping); the vCPUs run scripted guest
//! programs ([`crate::guest`]); the interrupt controller queues MSI messages and
//! line assertions per destination vCPU, in order, and records each in the
//! shared [`Trace`].

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use colinux_devices::interrupt::InterruptSink;
use colinux_driver::hypervisor::{
    CpuIdEntry, DataMatch, GsiRoute, Hypervisor, HypervisorError, IoEventAddress, Result, Vcpu, Vm,
};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::fault::FaultPlan;
use crate::fd::same_file;
use crate::guest::GuestProgram;
use crate::trace::Trace;
use crate::vcpu::SimVcpu;
use crate::vm_shared::{lock, VmShared};
pub use crate::vm_shared::{GuestOutcome, IdleHook, SimConfig};

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
            shared: Arc::new(VmShared::new(config, trace)),
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
        v.retain(|(f, g)| !(*g == gsi && same_file(f.as_raw_fd(), fd.as_raw_fd())));
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
        v.retain(|(f, a, m)| {
            !(*a == addr && *m == datamatch && same_file(f.as_raw_fd(), fd.as_raw_fd()))
        });
        if v.len() == before {
            return Err(HypervisorError::Unsupported(format!(
                "no ioeventfd at {addr:?}"
            )));
        }
        Ok(())
    }
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
    use crate::trace::Interrupt;

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
