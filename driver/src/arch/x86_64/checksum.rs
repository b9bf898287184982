//! The 8-bit checksum that closes ACPI tables and MP-table structures: the
//! byte that makes all bytes of the structure sum to zero.

/// The byte that makes `bytes` plus itself sum to 0 (mod 256).
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_the_sum() {
        for bytes in [&b""[..], b"RSD PTR ", &[0xff; 300]] {
            let c = checksum(bytes);
            let sum = bytes.iter().fold(c, |a, &b| a.wrapping_add(b));
            assert_eq!(sum, 0);
        }
    }
}
