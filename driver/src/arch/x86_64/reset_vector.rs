//! The reset vector without a BIOS: a kernel that reboots "through the BIOS"
//! jumps to F000:FFF0, and what it finds there resets the machine through
//! the ACPI reset register the daemon serves.

use super::acpi;

/// Physical address of the real-mode reset vector (F000:FFF0).
pub const RESET_VECTOR: u64 = 0xf_fff0;

/// The code at the reset vector: there is no BIOS, so a kernel that reboots
/// "through the BIOS" (Linux falls back to it after ACPI, keyboard controller and
/// EFI, and a hardware-reduced ACPI platform starts with EFI) lands here, and
/// this writes the ACPI reset register the daemon serves:
/// `mov al, RESET_VALUE; mov dx, RESET_PORT; out dx, al; hlt; jmp $-1`.
pub fn reset_vector_stub() -> Vec<u8> {
    let port = acpi::RESET_PORT.to_le_bytes();
    vec![
        0xb0,
        acpi::RESET_VALUE,
        0xba,
        port[0],
        port[1],
        0xee,
        0xf4,
        0xeb,
        0xfd,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_stub_fits_before_4g_wrap_and_targets_the_reset_port() {
        let stub = reset_vector_stub();
        assert!(RESET_VECTOR + stub.len() as u64 <= 0x10_0000);
        assert_eq!(stub[1], acpi::RESET_VALUE);
        assert_eq!(u16::from_le_bytes([stub[3], stub[4]]), acpi::RESET_PORT);
        assert_eq!(stub[5], 0xee, "out dx, al");
    }
}
