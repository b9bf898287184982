//! How devices raise interrupts without knowing the hypervisor.

use std::io;

/// Delivers interrupts to the guest. The daemon implements this over KVM
/// (`KVM_SIGNAL_MSI`, irqfds, `KVM_IRQ_LINE`); the `sim` crate records them.
pub trait InterruptSink: Send + Sync {
    /// Sends one message-signalled interrupt (an MSI or an MSI-X table entry).
    fn send_msi(&self, address: u64, data: u32) -> io::Result<()>;
    /// Sets a legacy (IOAPIC/PIC) interrupt line high or low.
    fn set_irq_line(&self, irq: u32, level: bool) -> io::Result<()>;
}

/// A sink for unit tests: ignores MSIs and records every line change in order.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct RecordedLines(pub(crate) std::sync::Mutex<Vec<(u32, bool)>>);

#[cfg(test)]
impl InterruptSink for RecordedLines {
    fn send_msi(&self, _: u64, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn set_irq_line(&self, irq: u32, level: bool) -> io::Result<()> {
        self.0.lock().unwrap().push((irq, level));
        Ok(())
    }
}
