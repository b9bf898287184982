//! The local APIC's interrupt pins as the boot protocol expects them:
//! LINT0 as the 8259's ExtINT input (masked), LINT1 as NMI.

use crate::hypervisor::LapicState;

/// LAPIC register offset of LVT LINT0.
pub const APIC_LVT0: usize = 0x350;
/// LAPIC register offset of LVT LINT1.
pub const APIC_LVT1: usize = 0x360;
/// LVT delivery mode ExtINT (the 8259 PIC's output).
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// LVT delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

fn lapic_reg(lapic: &LapicState, off: usize) -> u32 {
    let b: Vec<u8> = lapic.regs[off..off + 4].iter().map(|&c| c as u8).collect();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn set_lapic_reg(lapic: &mut LapicState, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        lapic.regs[off + i] = *b as _;
    }
}

/// Reads LAPIC register `off` (e.g. [`APIC_LVT0`]).
pub fn read_lapic(lapic: &LapicState, off: usize) -> u32 {
    lapic_reg(lapic, off)
}

/// LVT mask bit.
pub const APIC_LVT_MASKED: u32 = 1 << 16;

/// Wires LINT0 as ExtINT (the 8259's output, virtual wire mode) and LINT1 as NMI.
///
/// LINT0 is left masked: with the IOAPIC described in ACPI the kernel never
/// programs the (in-kernel) 8259, whose reset-state vectors must not reach the
/// CPU; a kernel that falls back to PIC mode unmasks ExtINT itself.
pub fn configure_lapic(lapic: &mut LapicState) {
    let lint0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(
        lapic,
        APIC_LVT0,
        (lint0 & !0x700) | (APIC_MODE_EXTINT << 8) | APIC_LVT_MASKED,
    );
    let lint1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, (lint1 & !0x700) | (APIC_MODE_NMI << 8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_lints() {
        let mut l = LapicState { regs: [0; 1024] };
        set_lapic_reg(&mut l, APIC_LVT0, 0x0400 | 0x20);
        configure_lapic(&mut l);
        assert_eq!(read_lapic(&l, APIC_LVT0), APIC_LVT_MASKED | 0x0700 | 0x20);
        assert_eq!((read_lapic(&l, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}
