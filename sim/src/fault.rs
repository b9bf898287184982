//! Faults injected at the world-switch boundary, by run number.
//!
//! A [`FaultPlan`] says which `run()` call of which vCPU misbehaves and how.
//! Runs are counted per vCPU from 1, so with a deterministic guest the same plan
//! always hits the same guest instruction, and the trace shows it.

use std::collections::BTreeMap;

/// One injected misbehaviour of a `run()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The run returns [`VmExit::Interrupted`](colinux_driver::hypervisor::VmExit::Interrupted)
    /// before the guest executes anything (a signal hit `KVM_RUN`: `EINTR`).
    Interrupted,
    /// The run returns [`VmExit::Halt`](colinux_driver::hypervisor::VmExit::Halt)
    /// without the guest having halted (a spurious exit the monitor must ignore).
    SpuriousHalt,
    /// The run fails with this OS error (`KVM_RUN` returned `-1`).
    RunError(i32),
}

/// Which runs misbehave, and which interrupt deliveries fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    runs: BTreeMap<(u32, u64), Fault>,
    /// Number of the next MSI deliveries (`signal_msi`) that fail with `EIO`.
    pub failing_msis: u32,
}

impl FaultPlan {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes run number `run` (1-based) of vCPU `vcpu` misbehave with `fault`.
    pub fn at(mut self, vcpu: u32, run: u64, fault: Fault) -> Self {
        self.runs.insert((vcpu, run), fault);
        self
    }

    /// Makes the next `n` MSI deliveries fail.
    pub fn failing_msis(mut self, n: u32) -> Self {
        self.failing_msis = n;
        self
    }

    /// Removes and returns the fault planned for this run, if any.
    pub(crate) fn take(&mut self, vcpu: u32, run: u64) -> Option<Fault> {
        self.runs.remove(&(vcpu, run))
    }

    /// Number of run faults not yet injected.
    pub fn pending(&self) -> usize {
        self.runs.len()
    }
}
