//! MSI-X: the capability's control bits, the vector table and the pending bit
//! array (PBA), both living in a memory BAR.
//!
//! A device calls [`Msix::notify`] with a vector number; the message goes out
//! through the [`InterruptSink`] unless the vector or the whole function is
//! masked, in which case the pending bit is set and the message is sent when the
//! guest unmasks (as the PCI spec requires).

use crate::interrupt::InterruptSink;

/// Capability ID of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;
/// Bytes per table entry.
pub const ENTRY_SIZE: usize = 16;
/// "No vector" as used by virtio's `msix_vector` registers.
pub const NO_VECTOR: u16 = 0xffff;
const CTRL_ENABLE: u16 = 1 << 15;
const CTRL_FUNCTION_MASK: u16 = 1 << 14;

/// MSI-X state of one function.
#[derive(Debug, Clone)]
pub struct Msix {
    table: Vec<u8>,
    pba: Vec<u64>,
    enabled: bool,
    function_mask: bool,
}

impl Msix {
    /// A table of `vectors` entries (1..=2048), all masked, as after reset.
    pub fn new(vectors: u16) -> Self {
        let n = usize::from(vectors.clamp(1, 2048));
        let mut table = vec![0u8; n * ENTRY_SIZE];
        for e in table.chunks_mut(ENTRY_SIZE) {
            e[12] = 1; // vector control: masked
        }
        Msix {
            table,
            pba: vec![0; n.div_ceil(64)],
            enabled: false,
            function_mask: false,
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        (self.table.len() / ENTRY_SIZE) as u16
    }

    /// Size of the table in bytes.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Size of the PBA in bytes.
    pub fn pba_len(&self) -> usize {
        self.pba.len() * 8
    }

    /// The capability body (after ID and next pointer) and its write mask, for a
    /// table at `table_offset` and PBA at `pba_offset`, both in BAR `bar`.
    pub fn capability(&self, bar: u8, table_offset: u32, pba_offset: u32) -> ([u8; 10], [u8; 10]) {
        let mut body = [0u8; 10];
        body[0..2].copy_from_slice(&(self.vectors() - 1).to_le_bytes());
        body[2..6].copy_from_slice(&(table_offset | u32::from(bar)).to_le_bytes());
        body[6..10].copy_from_slice(&(pba_offset | u32::from(bar)).to_le_bytes());
        let mut mask = [0u8; 10];
        mask[1] = 0xc0;
        (body, mask)
    }

    /// Whether MSI-X is enabled by the guest.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Applies the message control register after a guest config write; sends
    /// pending messages that became deliverable.
    pub fn set_control(&mut self, control: u16, sink: &dyn InterruptSink) {
        self.enabled = control & CTRL_ENABLE != 0;
        self.function_mask = control & CTRL_FUNCTION_MASK != 0;
        self.flush_pending(sink);
    }

    /// Resets all entries to masked, disables MSI-X.
    pub fn reset(&mut self) {
        *self = Msix::new(self.vectors());
    }

    fn entry_masked(&self, v: usize) -> bool {
        self.table[v * ENTRY_SIZE + 12] & 1 != 0
    }

    fn message(&self, v: usize) -> (u64, u32) {
        let e = &self.table[v * ENTRY_SIZE..(v + 1) * ENTRY_SIZE];
        let word = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
        (u64::from(word(4)) << 32 | u64::from(word(0)), word(8))
    }

    fn set_pending(&mut self, v: usize, on: bool) {
        let bit = 1u64 << (v % 64);
        if on {
            self.pba[v / 64] |= bit;
        } else {
            self.pba[v / 64] &= !bit;
        }
    }

    fn is_pending(&self, v: usize) -> bool {
        self.pba[v / 64] & (1 << (v % 64)) != 0
    }

    /// Signals `vector`. Returns false when the vector does not exist or MSI-X is
    /// disabled (the caller may fall back to INTx).
    pub fn notify(&mut self, vector: u16, sink: &dyn InterruptSink) -> bool {
        let v = usize::from(vector);
        if !self.enabled || v >= usize::from(self.vectors()) {
            return false;
        }
        if self.function_mask || self.entry_masked(v) {
            self.set_pending(v, true);
        } else {
            self.send(v, sink);
        }
        true
    }

    fn send(&self, v: usize, sink: &dyn InterruptSink) {
        let (addr, data) = self.message(v);
        if let Err(e) = sink.send_msi(addr, data) {
            crate::guest_log!(warn, vector = v, error = %e, "MSI-X delivery failed");
        }
    }

    fn flush_pending(&mut self, sink: &dyn InterruptSink) {
        if !self.enabled || self.function_mask {
            return;
        }
        for v in 0..usize::from(self.vectors()) {
            if self.is_pending(v) && !self.entry_masked(v) {
                self.set_pending(v, false);
                self.send(v, sink);
            }
        }
    }

    /// Guest read of the table at byte `offset`; out of range reads as zero.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset as usize + i;
            *b = self.table.get(o).copied().unwrap_or(0);
        }
    }

    /// Guest write of the table; only address, data and the mask bit are writable.
    pub fn table_write(&mut self, offset: u64, data: &[u8], sink: &dyn InterruptSink) {
        for (i, &b) in data.iter().enumerate() {
            let o = offset as usize + i;
            let Some(slot) = self.table.get_mut(o) else {
                break;
            };
            *slot = match o % ENTRY_SIZE {
                12 => b & 1,
                13..=15 => 0,
                _ => b,
            };
        }
        self.flush_pending(sink);
    }

    /// Guest read of the PBA (read-only).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let o = offset as usize + i;
            *b = self
                .pba
                .get(o / 8)
                .map_or(0, |w| (w >> ((o % 8) * 8)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<(u64, u32)>>);
    impl InterruptSink for Rec {
        fn send_msi(&self, address: u64, data: u32) -> std::io::Result<()> {
            self.0.lock().unwrap().push((address, data));
            Ok(())
        }
        fn set_irq_line(&self, _irq: u32, _level: bool) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn masked_vector_goes_pending_then_fires_on_unmask() {
        let sink = Rec::default();
        let mut m = Msix::new(3);
        assert!(!m.notify(1, &sink), "disabled MSI-X does not deliver");
        m.set_control(CTRL_ENABLE, &sink);
        m.table_write(16, &0xfee0_0000u32.to_le_bytes(), &sink);
        m.table_write(24, &0x41u32.to_le_bytes(), &sink);
        assert!(m.notify(1, &sink));
        assert!(sink.0.lock().unwrap().is_empty());
        let mut pba = [0u8; 8];
        m.pba_read(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        m.table_write(28, &0u32.to_le_bytes(), &sink);
        assert_eq!(*sink.0.lock().unwrap(), vec![(0xfee0_0000, 0x41)]);
        m.pba_read(0, &mut pba);
        assert_eq!(pba[0], 0);
        assert!(m.notify(1, &sink));
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        assert!(!m.notify(3, &sink), "vector out of range");
        m.set_control(CTRL_ENABLE | CTRL_FUNCTION_MASK, &sink);
        m.notify(1, &sink);
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        m.set_control(CTRL_ENABLE, &sink);
        assert_eq!(sink.0.lock().unwrap().len(), 3);
    }
}
