//! The Intel MultiProcessor Specification 1.4 table: CPUs, buses, the IOAPIC and
//! the interrupt wiring, for kernels that find their interrupts without ACPI.
//!
//! Debian's cloud kernel is built without `CONFIG_X86_MPPARSE` and uses the ACPI
//! tables instead; the MP table is written anyway (kernels with MP parsing and
//! `acpi=off` use it), in the EBDA where the kernel scans for it.

use crate::arch::x86_64::checksum::checksum;
use crate::arch::x86_64::layout::{IOAPIC_START, LAPIC_START};
use crate::arch::x86_64::pci_irq;

/// Where the MP floating pointer (and the table after it) is placed: the EBDA.
pub const MPTABLE_START: u64 = crate::arch::x86_64::layout::EBDA_START;
/// Bus id of PCI bus 0 in the table.
pub const BUS_PCI: u8 = 0;
/// Bus id of the ISA bus in the table.
pub const BUS_ISA: u8 = 1;
/// Number of IOAPIC pins (KVM's IOAPIC has 24).
pub const IOAPIC_PINS: u8 = 24;
/// Interrupt entry flags: polarity active-low (0b11), trigger level (0b11 << 2).
const PCI_INT_FLAGS: u8 = 0x0f;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

/// Builds the floating pointer and configuration table for placement at `base`.
pub fn build(cpus: u8, ioapic_id: u8, base: u64) -> Vec<u8> {
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for id in 0..cpus {
        let mut e = vec![0u8, id, APIC_VERSION, 1 | if id == 0 { 2 } else { 0 }];
        e.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        e.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        e.extend_from_slice(&[0; 8]);
        entries.push(e);
    }
    let mut pci = vec![1u8, BUS_PCI];
    pci.extend_from_slice(b"PCI   ");
    entries.push(pci);
    let mut isa = vec![1u8, BUS_ISA];
    isa.extend_from_slice(b"ISA   ");
    entries.push(isa);
    let mut ioapic = vec![2u8, ioapic_id, IOAPIC_VERSION, 1];
    ioapic.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    entries.push(ioapic);
    // ISA IRQ n -> IOAPIC pin n (the in-kernel irqchip's default routing).
    for irq in 0..16u8 {
        entries.push(vec![3, 0, 0, 0, BUS_ISA, irq, ioapic_id, irq]);
    }
    // PCI bus 0: each slot's INTA# (every device we build is single-function
    // with INTA#; four pins per slot would overflow the 1 KiB EBDA) to its
    // IOAPIC input, level-triggered, active-low. Source IRQ: slot << 2 | pin - 1.
    for slot in 1..pci_irq::SLOTS {
        let gsi = pci_irq::gsi(slot, 1) as u8;
        entries.push(vec![
            3,
            0,
            PCI_INT_FLAGS,
            0,
            BUS_PCI,
            slot << 2,
            ioapic_id,
            gsi,
        ]);
    }
    // Local interrupts: LINT0 ExtINT, LINT1 NMI, on every local APIC.
    entries.push(vec![4, 3, 0, 0, BUS_ISA, 0, 0xff, 0]);
    entries.push(vec![4, 1, 0, 0, BUS_ISA, 0, 0xff, 1]);

    let body: Vec<u8> = entries.concat();
    let table_len = 44 + body.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.push(4);
    table.push(0);
    table.extend_from_slice(b"COLINUX ");
    table.extend_from_slice(b"COLINUX-RS  ");
    table.extend_from_slice(&0u32.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    table.extend_from_slice(&(LAPIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0, 0, 0, 0]);
    table.extend_from_slice(&body);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&((base + 16) as u32).to_le_bytes());
    fp.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    fp.extend(table);
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_counts_and_pointer() {
        for cpus in [1u8, 2, 8, 64] {
            let t = build(cpus, 0, MPTABLE_START);
            assert_eq!(checksum(&t[..16]), 0);
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, MPTABLE_START + 16);
            let table = &t[16..];
            let len = u16::from_le_bytes([table[4], table[5]]) as usize;
            assert_eq!(len, table.len());
            assert_eq!(checksum(table), 0);
            let count = u16::from_le_bytes([table[34], table[35]]) as usize;
            assert_eq!(count, cpus as usize + 2 + 1 + 16 + 31 + 2);
            // Exactly one boot processor.
            let bsp = table[44..44 + 20 * cpus as usize]
                .chunks(20)
                .filter(|e| e[0] == 0 && e[3] & 2 != 0)
                .count();
            assert_eq!(bsp, 1);
        }
        // The whole structure fits in the EBDA's first KiB for small machines.
        assert!(build(8, 0, MPTABLE_START).len() <= 1024);
    }
}
