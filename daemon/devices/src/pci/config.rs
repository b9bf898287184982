//! A type 0 PCI configuration space: 256 bytes with a per-byte write mask, BAR
//! sizing and programming, and a capability list builder.
//!
//! Every register a guest may change has its bits set in `wmask`; everything else
//! is read-only, so a write of all ones to a BAR reads back the size mask (the
//! classic BAR sizing protocol) without any special casing.

/// Offset of the vendor ID.
pub const VENDOR_ID: usize = 0x00;
/// Offset of the command register.
pub const COMMAND: usize = 0x04;
/// Offset of the status register.
pub const STATUS: usize = 0x06;
/// Offset of the first BAR.
pub const BAR0: usize = 0x10;
/// Offset of the capabilities pointer.
pub const CAP_PTR: usize = 0x34;
/// Offset of the interrupt line register.
pub const INTERRUPT_LINE: usize = 0x3c;
/// Offset of the interrupt pin register.
pub const INTERRUPT_PIN: usize = 0x3d;

/// Command register: memory space decoding enabled.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: the device may master the bus (DMA, MSI).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command register: legacy INTx disabled.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Status register: the function's INTx# is pending (before Interrupt Disable).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status register: a capability list is present.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// First byte available for capabilities.
const CAP_START: usize = 0x40;
/// Number of BAR slots in a type 0 header.
pub const NUM_BARS: usize = 6;

/// Identity of a PCI function, written into its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIds {
    /// Vendor ID (e.g. 0x1af4 for virtio).
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code: base class, subclass, programming interface (`0xBBSSPP`).
    pub class: u32,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// One memory BAR as seen by the device model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    /// Size in bytes (a power of two, at least 16).
    pub size: u64,
    /// Whether the BAR is 64-bit (it then occupies two slots).
    pub is_64bit: bool,
}

/// Errors building a configuration space (programming errors in device setup).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The BAR size is not a power of two of at least 16 bytes.
    #[error("BAR {index} size {size:#x} is not a power of two >= 16")]
    BadBarSize {
        /// BAR slot.
        index: usize,
        /// Rejected size.
        size: u64,
    },
    /// The BAR slot is taken or out of range.
    #[error("BAR slot {index} is unavailable")]
    BarSlot {
        /// BAR slot.
        index: usize,
    },
    /// The capability list ran out of the 256-byte space.
    #[error("capability of {len} bytes does not fit in configuration space")]
    CapabilitySpace {
        /// Requested capability length.
        len: usize,
    },
}

/// The 256-byte configuration space of one function.
#[derive(Clone)]
pub struct PciConfig {
    regs: [u8; 256],
    wmask: [u8; 256],
    bars: [Option<BarInfo>; NUM_BARS],
    last_cap: Option<usize>,
    next_cap: usize,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfig")
            .field("vendor", &self.read_u16(VENDOR_ID))
            .field("device", &self.read_u16(VENDOR_ID + 2))
            .field("bars", &self.bars)
            .finish()
    }
}

impl PciConfig {
    /// A type 0 header with the given identity and interrupt pin (0 = none, 1 = INTA#).
    pub fn new(ids: PciIds, interrupt_pin: u8) -> Self {
        let mut c = PciConfig {
            regs: [0; 256],
            wmask: [0; 256],
            bars: [None; NUM_BARS],
            last_cap: None,
            next_cap: CAP_START,
        };
        c.set_u16(VENDOR_ID, ids.vendor);
        c.set_u16(0x02, ids.device);
        c.regs[0x08] = ids.revision;
        c.regs[0x09] = ids.class as u8;
        c.regs[0x0a] = (ids.class >> 8) as u8;
        c.regs[0x0b] = (ids.class >> 16) as u8;
        c.regs[0x0e] = 0; // header type 0, single function
        c.set_u16(0x2c, ids.subsystem_vendor);
        c.set_u16(0x2e, ids.subsystem);
        c.regs[INTERRUPT_PIN] = interrupt_pin;
        let cmd_mask = 1 | CMD_MEMORY | CMD_BUS_MASTER | (1 << 6) | (1 << 8) | CMD_INTX_DISABLE;
        c.set_mask(COMMAND, &cmd_mask.to_le_bytes());
        c.set_mask(0x0c, &[0xff, 0xff]); // cache line size, latency timer
        c.set_mask(INTERRUPT_LINE, &[0xff]);
        c
    }

    fn set_mask(&mut self, offset: usize, mask: &[u8]) {
        self.wmask[offset..offset + mask.len()].copy_from_slice(mask);
    }

    fn set_u16(&mut self, offset: usize, v: u16) {
        self.regs[offset..offset + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Reads a little-endian u16 at `offset` (offset must be < 255).
    pub fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.regs[offset], self.regs[offset + 1]])
    }

    /// Reads a little-endian u32 at `offset` (offset must be < 253).
    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.regs[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND)
    }

    /// Declares a memory BAR at slot `index`. A 64-bit BAR also takes `index + 1`.
    pub fn add_mem_bar(
        &mut self,
        index: usize,
        size: u64,
        is_64bit: bool,
    ) -> Result<(), ConfigError> {
        if size < 16 || !size.is_power_of_two() || (!is_64bit && size > 1 << 31) {
            return Err(ConfigError::BadBarSize { index, size });
        }
        let slots = if is_64bit { 2 } else { 1 };
        if index + slots > NUM_BARS || (index..index + slots).any(|i| self.bar_slot_used(i)) {
            return Err(ConfigError::BarSlot { index });
        }
        self.bars[index] = Some(BarInfo { size, is_64bit });
        let off = BAR0 + index * 4;
        let flags: u32 = if is_64bit { 0b100 } else { 0 };
        self.regs[off..off + 4].copy_from_slice(&flags.to_le_bytes());
        let mask = !(size - 1);
        self.set_mask(off, &((mask as u32) & !0xf).to_le_bytes());
        if is_64bit {
            self.set_mask(off + 4, &((mask >> 32) as u32).to_le_bytes());
        }
        Ok(())
    }

    fn bar_slot_used(&self, i: usize) -> bool {
        self.bars[i].is_some() || (i > 0 && self.bars[i - 1].is_some_and(|b| b.is_64bit))
    }

    /// The BAR declared at slot `index`, if any.
    pub fn bar_info(&self, index: usize) -> Option<BarInfo> {
        self.bars.get(index).copied().flatten()
    }

    /// The guest-programmed base address of BAR `index` (flag bits stripped).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let info = self.bar_info(index)?;
        let off = BAR0 + index * 4;
        let low = u64::from(self.read_u32(off) & !0xf);
        let high = if info.is_64bit {
            u64::from(self.read_u32(off + 4))
        } else {
            0
        };
        Some(high << 32 | low)
    }

    /// Programs BAR `index` to `addr` (as firmware would before the guest starts).
    pub fn set_bar_address(&mut self, index: usize, addr: u64) {
        let Some(info) = self.bar_info(index) else {
            return;
        };
        let off = BAR0 + index * 4;
        let flags = self.read_u32(off) & 0xf;
        let low = (addr as u32 & !0xf & !(info.size as u32).wrapping_sub(1)) | flags;
        self.regs[off..off + 4].copy_from_slice(&low.to_le_bytes());
        if info.is_64bit {
            self.regs[off + 4..off + 8].copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
        }
    }

    /// Appends a capability with body `body` (bytes after the ID and next pointer)
    /// and returns its offset. `wmask` (same length as `body`) marks guest-writable bits.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        wmask: Option<&[u8]>,
    ) -> Result<usize, ConfigError> {
        let len = body.len() + 2;
        let off = self.next_cap;
        if off + len > 256 {
            return Err(ConfigError::CapabilitySpace { len });
        }
        self.regs[off] = id;
        self.regs[off + 1] = 0;
        self.regs[off + 2..off + len].copy_from_slice(body);
        if let Some(m) = wmask {
            let n = m.len().min(body.len());
            self.wmask[off + 2..off + 2 + n].copy_from_slice(&m[..n]);
        }
        match self.last_cap {
            Some(prev) => self.regs[prev + 1] = off as u8,
            None => self.regs[CAP_PTR] = off as u8,
        }
        self.last_cap = Some(off);
        self.next_cap = (off + len + 3) & !3;
        let status = self.read_u16(STATUS) | STATUS_CAP_LIST;
        self.set_u16(STATUS, status);
        Ok(off)
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as all ones.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// Applies a guest write through the write mask.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(m) = self.wmask.get(offset + i).copied() else {
                return;
            };
            let r = &mut self.regs[offset + i];
            *r = (*r & !m) | (b & m);
        }
    }

    /// Sets raw bytes, bypassing the write mask (device-side updates of its own
    /// registers, e.g. a capability field the device computes).
    pub fn set_raw(&mut self, offset: usize, data: &[u8]) {
        if let Some(dst) = self.regs.get_mut(offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor: 0x1af4,
            device: 0x1042,
            revision: 1,
            class: 0x018000,
            subsystem_vendor: 0x1af4,
            subsystem: 2,
        }
    }

    #[test]
    fn bar_sizing_protocol_64bit() {
        let mut c = PciConfig::new(ids(), 1);
        c.add_mem_bar(0, 0x4000, true).unwrap();
        c.write(BAR0, &u32::MAX.to_le_bytes());
        c.write(BAR0 + 4, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_u32(BAR0), 0xffff_c004);
        assert_eq!(c.read_u32(BAR0 + 4), 0xffff_ffff);
        c.write(BAR0, &0xe000_0000u32.to_le_bytes());
        c.write(BAR0 + 4, &1u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0x1_e000_0000));
        assert_eq!(c.read_u32(BAR0 + 8), 0, "unused BAR reads zero");
        assert_eq!(
            c.add_mem_bar(1, 0x1000, false),
            Err(ConfigError::BarSlot { index: 1 })
        );
    }

    #[test]
    fn capability_chain_and_read_only_bytes() {
        let mut c = PciConfig::new(ids(), 1);
        let a = c
            .add_capability(0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], None)
            .unwrap();
        let b = c.add_capability(0x09, &[0; 14], None).unwrap();
        assert_eq!(c.read_u16(STATUS) & STATUS_CAP_LIST, STATUS_CAP_LIST);
        assert_eq!(c.regs[CAP_PTR] as usize, a);
        assert_eq!(c.regs[a + 1] as usize, b);
        assert_eq!(c.regs[b + 1], 0);
        c.write(0, &[0, 0, 0, 0]);
        assert_eq!(c.read_u16(0), 0x1af4);
        let mut out = [0u8; 4];
        c.read(254, &mut out);
        assert_eq!(out[2..], [0xff, 0xff]);
    }
}
