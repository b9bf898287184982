//! [`InterruptSink`] over the hypervisor's VM: MSI messages and legacy lines.
//!
//! The PCI INTx lines (GSIs 16..=23, [`pci_irq`]) are shared once more than
//! eight devices sit on the bus, and level interrupts are wired-OR: the line is
//! high while any device asserts it. `KVM_IRQ_LINE` knows one userspace source
//! per GSI, so the OR is kept here, as a count of asserting devices per line.
//! Each source must report transitions only (as `VirtioPciDevice` does).

use std::io;
use std::sync::{Arc, Mutex};

use colinux_devices::interrupt::InterruptSink;
use colinux_driver::arch::x86_64::pci_irq;
use colinux_driver::hypervisor::{HypervisorError, Vm};

/// Delivers device interrupts through a [`Vm`] (KVM_SIGNAL_MSI / KVM_IRQ_LINE).
pub struct VmInterrupts {
    vm: Arc<dyn Vm>,
    /// Asserting sources per PCI INTx line (index = GSI - 16).
    pci_lines: Mutex<[u32; pci_irq::GSI_COUNT as usize]>,
}

impl VmInterrupts {
    /// Interrupts for `vm`.
    pub fn new(vm: Arc<dyn Vm>) -> Self {
        Self {
            vm,
            pci_lines: Mutex::new([0; pci_irq::GSI_COUNT as usize]),
        }
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
        if !pci_irq::is_pci_gsi(irq) {
            return self.vm.set_irq_line(irq, level).map_err(to_io);
        }
        // The lock also orders the KVM calls of two devices on one line.
        let mut lines = self.pci_lines.lock().unwrap_or_else(|e| e.into_inner());
        let n = &mut lines[(irq - pci_irq::GSI_BASE) as usize];
        let was = *n > 0;
        *n = if level { *n + 1 } else { n.saturating_sub(1) };
        if (*n > 0) == was {
            return Ok(());
        }
        self.vm.set_irq_line(irq, *n > 0).map_err(to_io)
    }
}
