//! Legacy PCI interrupt (INTx) routing of bus 0: which IOAPIC input each
//! slot's INTA#..INTD# pin drives.
//!
//! The routing is static, as on a board whose PCI interrupt lines are wired to
//! the IOAPIC: GSIs 16..=23 (the inputs KVM's 24-pin IOAPIC has above the ISA
//! range) with the classic slot swizzle, level-triggered and active-low. The
//! ACPI `_PRT`, the MP table's PCI interrupt entries and the daemon (which
//! writes the line into each device's Interrupt Line register and raises it)
//! all read it from here, so they cannot disagree.

/// First GSI of the PCI lines.
pub const GSI_BASE: u32 = 16;
/// Number of GSIs the PCI lines share (16..=23).
pub const GSI_COUNT: u32 = 8;
/// Slots on bus 0 (slot 0, the host bridge, has no interrupt pin).
pub const SLOTS: u8 = 32;

/// The GSI that `slot`'s interrupt pin `pin` (1 = INTA# .. 4 = INTD#) drives:
/// `16 + (slot + pin - 1) mod 8`. Lines are shared past eight devices (level
/// interrupts are wired-OR).
pub fn gsi(slot: u8, pin: u8) -> u32 {
    GSI_BASE + (u32::from(slot) + u32::from(pin.clamp(1, 4) - 1)) % GSI_COUNT
}

/// Whether `gsi` is one of the PCI lines.
pub fn is_pci_gsi(gsi: u32) -> bool {
    (GSI_BASE..GSI_BASE + GSI_COUNT).contains(&gsi)
}

/// Every routed `(slot, pin, gsi)`: slots 1..32, pins INTA#..INTD#.
pub fn routes() -> impl Iterator<Item = (u8, u8, u32)> {
    (1..SLOTS).flat_map(|slot| (1..=4u8).map(move |pin| (slot, pin, gsi(slot, pin))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swizzle_stays_in_the_pci_lines() {
        assert_eq!(gsi(1, 1), 17);
        assert_eq!(gsi(1, 2), 18);
        assert_eq!(gsi(7, 1), 23);
        assert_eq!(gsi(8, 1), 16);
        assert!(routes().all(|(_, _, g)| is_pci_gsi(g)));
        assert_eq!(routes().count(), 31 * 4);
        assert!(!is_pci_gsi(4) && !is_pci_gsi(24));
    }
}
