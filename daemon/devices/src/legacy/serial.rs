//! The 8250/16550 serial console (vm-superio's UART) on a port range, raising
//! its ISA interrupt through an [`InterruptSink`].

use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

use crate::bus::BusDevice;
use crate::interrupt::InterruptSink;

/// Raises an edge on an ISA interrupt line.
pub struct IrqEdge {
    sink: Arc<dyn InterruptSink>,
    irq: u32,
}

impl IrqEdge {
    /// An edge trigger for line `irq`.
    pub fn new(sink: Arc<dyn InterruptSink>, irq: u32) -> Self {
        Self { sink, irq }
    }
}

impl Trigger for IrqEdge {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.sink.set_irq_line(self.irq, true)?;
        self.sink.set_irq_line(self.irq, false)
    }
}

/// A UART whose transmitter writes to `W`.
pub struct SerialPort<W: Write + Send> {
    uart: Serial<IrqEdge, NoEvents, W>,
}

impl<W: Write + Send> SerialPort<W> {
    /// A UART on interrupt `irq` of `sink`, sending its output to `out`.
    pub fn new(sink: Arc<dyn InterruptSink>, irq: u32, out: W) -> Self {
        Self {
            uart: Serial::new(IrqEdge::new(sink, irq), out),
        }
    }

    /// Queues host input for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity();
        let n = room.min(bytes.len());
        if n == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(&bytes[..n]) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("serial input dropped: {e:?}");
                0
            }
        }
    }

    /// The output writer (e.g. to flush it).
    pub fn writer_mut(&mut self) -> &mut W {
        self.uart.writer_mut()
    }
}

impl<W: Write + Send> BusDevice for SerialPort<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.uart.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            if let Err(e) = self.uart.write(offset as u8, v) {
                crate::guest_log!(debug, "serial write at +{offset}: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::RecordedLines as Lines;

    #[test]
    fn transmits_and_receives_with_interrupts() {
        let lines = Arc::new(Lines::default());
        let mut port = SerialPort::new(lines.clone(), 4, Vec::new());
        for b in b"hi\n" {
            port.write(0, &[*b]);
        }
        assert_eq!(port.writer_mut().as_slice(), b"hi\n");
        // Enable the "data available" interrupt, then feed input.
        port.write(1, &[0x01]);
        assert_eq!(port.enqueue_input(b"ok"), 2);
        assert!(lines.0.lock().unwrap().contains(&(4, true)));
        let mut lsr = [0u8];
        port.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut b = [0u8];
        port.read(0, &mut b);
        assert_eq!(b[0], b'o');
    }
}
