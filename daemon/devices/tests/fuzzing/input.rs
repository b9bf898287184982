//! A cursor over the fuzzer's bytes: every read succeeds (zeros once the
//! input is exhausted), so any byte string is a valid program.

/// The fuzzer's input, read front to back.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// Next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    /// Next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }

    /// An access width: 1, 2, 4 or (with `eight`) 8 bytes.
    pub fn width(&mut self, eight: bool) -> usize {
        let w = 1usize << (self.u8() & 3);
        if w == 8 && !eight {
            4
        } else {
            w
        }
    }

    /// A guest address: mostly inside the scratch area, sometimes in the
    /// rings, at the edge of a RAM region, in the hole, or anywhere at all.
    pub fn addr(&mut self) -> u64 {
        use super::{HIGH, LOW, SCRATCH, SCRATCH_LEN};
        let kind = self.u8() & 15;
        let off = u64::from(self.u16());
        match kind {
            0..=9 => SCRATCH + off % SCRATCH_LEN,
            10 => 0x1000 + off % 0x6000,
            11 => LOW.0 + LOW.1 as u64 - off % 64,
            12 => LOW.0 + LOW.1 as u64 + off % (HIGH.0 - LOW.1 as u64),
            13 => HIGH.0 + off % HIGH.1 as u64,
            14 => HIGH.0 + HIGH.1 as u64 - off % 64,
            _ => self.u64(),
        }
    }

    /// A descriptor length: the sizes drivers use, edge cases, or any u32.
    pub fn len(&mut self) -> u32 {
        match self.u8() & 7 {
            0 => 0,
            1 => 1,
            2 => 16,
            3 => 512,
            4 => u32::from(self.u8()),
            5 => u32::from(self.u16()),
            6 => 0x1_0000,
            _ => self.u32(),
        }
    }
}
