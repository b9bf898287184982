//! Guest-side PCI: configuration mechanism #1 through ports 0xCF8/0xCFC, the
//! type-1 probe and sanity check Linux runs before trusting it, bus 0
//! enumeration, capability lists and BAR sizing.

use crate::guest::{GuestCpu, GuestError, GuestResult};

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The configuration data window.
pub const CONFIG_DATA: u16 = 0xcfc;
/// Command register: memory space enable.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable.
pub const CMD_MASTER: u16 = 1 << 2;

/// One memory BAR as the guest found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Address the BAR currently decodes.
    pub addr: u64,
    /// Size from the sizing protocol.
    pub size: u64,
    /// Whether the BAR is 64-bit.
    pub is_64: bool,
}

/// A function found on bus 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// Slot (device number) on bus 0.
    pub slot: u8,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code `0xBBSSPP`.
    pub class: u32,
    /// Memory BARs by slot.
    pub bars: [Option<Bar>; 6],
    /// Capabilities: (ID, offset) in list order.
    pub caps: Vec<(u8, u8)>,
}

fn address(slot: u8, offset: u8) -> u32 {
    0x8000_0000 | (u32::from(slot & 0x1f) << 11) | u32::from(offset & 0xfc)
}

/// Reads `size` bytes of slot `slot`'s configuration space at `offset`.
pub fn read(cpu: &mut GuestCpu, slot: u8, offset: u8, size: u8) -> GuestResult<u32> {
    cpu.outl(CONFIG_ADDRESS, address(slot, offset))?;
    cpu.port_in(CONFIG_DATA + u16::from(offset & 3), size)
}

/// Writes `size` bytes of `value` into slot `slot`'s configuration space.
pub fn write(cpu: &mut GuestCpu, slot: u8, offset: u8, size: u8, value: u32) -> GuestResult<()> {
    cpu.outl(CONFIG_ADDRESS, address(slot, offset))?;
    cpu.port_out(CONFIG_DATA + u16::from(offset & 3), size, value)
}

/// Linux's `pci_check_type1`: the address register must latch a full dword,
/// then a host bridge (or a known vendor) must answer on bus 0.
pub fn probe_conf1(cpu: &mut GuestCpu) -> GuestResult<()> {
    cpu.note("pci: probing configuration mechanism #1");
    cpu.outb(0xcfb, 0x01)?;
    let saved = cpu.inl(CONFIG_ADDRESS)?;
    cpu.outl(CONFIG_ADDRESS, 0x8000_0000)?;
    let latched = cpu.inl(CONFIG_ADDRESS)?;
    cpu.outl(CONFIG_ADDRESS, saved)?;
    if latched != 0x8000_0000 {
        return Err(GuestError::Device(format!(
            "PCI conf1: address register reads {latched:#x}, not 0x80000000"
        )));
    }
    for slot in 0..32 {
        let class = read(cpu, slot, 0x0a, 2)? as u16;
        let vendor = read(cpu, slot, 0x00, 2)? as u16;
        if class == 0x0600 || class == 0x0300 || vendor == 0x8086 || vendor == 0x0e11 {
            return Ok(());
        }
    }
    Err(GuestError::Device(
        "PCI conf1: sanity check found no host bridge".into(),
    ))
}

/// Enumerates bus 0: identity, capability list and memory BARs (sized with
/// decoding off, as Linux does, and restored).
pub fn scan(cpu: &mut GuestCpu) -> GuestResult<Vec<PciFunction>> {
    cpu.note("pci: scanning bus 0");
    let mut out = Vec::new();
    for slot in 0..32u8 {
        let id = read(cpu, slot, 0, 4)?;
        let vendor = id as u16;
        if vendor == 0xffff || vendor == 0 {
            continue;
        }
        let class = read(cpu, slot, 0x08, 4)? >> 8;
        let status = read(cpu, slot, 0x06, 2)? as u16;
        let mut caps = Vec::new();
        if status & (1 << 4) != 0 {
            let mut ptr = read(cpu, slot, 0x34, 1)? as u8 & !3;
            // A hostile or broken list cannot loop forever: at most 48 entries.
            while ptr >= 0x40 && caps.len() < 48 {
                let id = read(cpu, slot, ptr, 1)? as u8;
                caps.push((id, ptr));
                ptr = read(cpu, slot, ptr + 1, 1)? as u8 & !3;
            }
        }
        let bars = size_bars(cpu, slot)?;
        cpu.note(format!(
            "pci: 00:{slot:02x}.0 {vendor:04x}:{:04x} class {class:06x} caps {caps:02x?} bars {:x?}",
            id >> 16,
            bars.iter().flatten().map(|b| (b.addr, b.size)).collect::<Vec<_>>()
        ));
        out.push(PciFunction {
            slot,
            vendor,
            device: (id >> 16) as u16,
            class,
            bars,
            caps,
        });
    }
    Ok(out)
}

fn size_bars(cpu: &mut GuestCpu, slot: u8) -> GuestResult<[Option<Bar>; 6]> {
    let mut bars = [None; 6];
    let cmd = read(cpu, slot, 0x04, 2)? as u16;
    write(cpu, slot, 0x04, 2, u32::from(cmd & !(CMD_MEMORY | 1)))?;
    let mut i = 0;
    while i < 6 {
        let off = 0x10 + 4 * i as u8;
        let orig = read(cpu, slot, off, 4)?;
        write(cpu, slot, off, 4, u32::MAX)?;
        let mask = read(cpu, slot, off, 4)?;
        write(cpu, slot, off, 4, orig)?;
        if orig & 1 != 0 || mask == 0 || mask == u32::MAX {
            i += 1;
            continue;
        }
        let is_64 = (orig >> 1) & 3 == 2;
        let (mut addr, mut size_mask) = (u64::from(orig & !0xf), u64::from(mask & !0xf));
        if is_64 && i < 5 {
            let hi = read(cpu, slot, off + 4, 4)?;
            write(cpu, slot, off + 4, 4, u32::MAX)?;
            let hmask = read(cpu, slot, off + 4, 4)?;
            write(cpu, slot, off + 4, 4, hi)?;
            addr |= u64::from(hi) << 32;
            size_mask |= u64::from(hmask) << 32;
        } else {
            size_mask |= 0xffff_ffff_0000_0000;
        }
        let size = (!size_mask).wrapping_add(1);
        if size != 0 {
            bars[i] = Some(Bar { addr, size, is_64 });
        }
        i += if is_64 { 2 } else { 1 };
    }
    write(cpu, slot, 0x04, 2, u32::from(cmd))?;
    Ok(bars)
}

/// Moves BAR `index` of `slot` to `addr` (decoding off while it changes).
pub fn move_bar(
    cpu: &mut GuestCpu,
    f: &mut PciFunction,
    index: usize,
    addr: u64,
) -> GuestResult<()> {
    let Some(bar) = f.bars.get_mut(index).and_then(|b| b.as_mut()) else {
        return Err(GuestError::Device(format!(
            "slot {} has no BAR {index}",
            f.slot
        )));
    };
    let cmd = read(cpu, f.slot, 0x04, 2)? as u16;
    write(cpu, f.slot, 0x04, 2, u32::from(cmd & !CMD_MEMORY))?;
    let off = 0x10 + 4 * index as u8;
    let flags = read(cpu, f.slot, off, 4)? & 0xf;
    write(cpu, f.slot, off, 4, (addr as u32 & !0xf) | flags)?;
    if bar.is_64 {
        write(cpu, f.slot, off + 4, 4, (addr >> 32) as u32)?;
    }
    write(cpu, f.slot, 0x04, 2, u32::from(cmd))?;
    bar.addr = addr;
    Ok(())
}
