//! The Internet checksum (RFC 1071) for IPv4 headers and TCP/UDP over IPv4/IPv6.

/// Adds `data` as big-endian 16-bit words to `sum` (odd tail padded with zero).
pub(crate) fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so long buffers cannot overflow.
        if sum & 0x8000_0000 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum to 16 bits and complements it: the value stored on the wire.
pub(crate) fn finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header sum for TCP/UDP over IPv4.
pub(crate) fn pseudo_v4(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let sum = add(add(0, src), dst);
    sum + u32::from(proto) + len as u32
}

/// The pseudo-header sum for TCP/UDP over IPv6.
pub(crate) fn pseudo_v6(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let sum = add(add(0, src), dst);
    let len = len as u32;
    sum + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // The worked example of RFC 1071 section 3: sum 0xddf2, checksum !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(add(0, &data)), !0xddf2);
    }

    #[test]
    fn verifies_to_zero() {
        // An IPv4 header with its checksum filled in sums to 0xffff.
        let mut hdr = [
            0x45, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ];
        let c = finish(add(0, &hdr));
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(finish(add(0, &hdr)), 0);
    }

    #[test]
    fn odd_length_pads() {
        assert_eq!(add(0, &[0xab]), 0xab00);
    }
}
