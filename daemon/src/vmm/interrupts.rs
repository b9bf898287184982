//! [`InterruptSink`] over the hypervisor's VM: MSI messages and legacy lines.

use std::io;
use std::sync::Arc;

use colinux_devices::interrupt::InterruptSink;
use colinux_driver::hypervisor::{HypervisorError, Vm};

/// Delivers device interrupts through a [`Vm`] (KVM_SIGNAL_MSI / KVM_IRQ_LINE).
pub struct VmInterrupts {
    vm: Arc<dyn Vm>,
}

impl VmInterrupts {
    /// Interrupts for `vm`.
    pub fn new(vm: Arc<dyn Vm>) -> Self {
        Self { vm }
    }
}

fn to_io(e: HypervisorError) -> io::Error {
    match e {
        HypervisorError::Op { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl InterruptSink for VmInterrupts {
    fn send_msi(&self, address: u64, data: u32) -> io::Result<()> {
        self.vm.signal_msi(address, data).map_err(to_io)
    }

    fn set_irq_line(&self, irq: u32, level: bool) -> io::Result<()> {
        self.vm.set_irq_line(irq, level).map_err(to_io)
    }
}
