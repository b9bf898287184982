//! Small Ethernet helpers shared by the backends and their tests: MAC parsing and
//! printing, EtherTypes, and finding the layer-3 header behind an optional VLAN tag.

use std::fmt::Write as _;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Parses `xx:xx:xx:xx:xx:xx` (exactly six two-digit hex fields, as coLinux wants).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut fields = s.split(':');
    for b in &mut mac {
        let f = fields.next()?;
        if f.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(f, 16).ok()?;
    }
    fields.next().is_none().then_some(mac)
}

/// Prints a MAC as `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// True for group (multicast or broadcast) addresses: the I/G bit is set.
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

/// The destination MAC of a frame at least 6 bytes long.
pub fn dst_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(0..6)?.try_into().ok()
}

/// The source MAC of a frame at least 12 bytes long.
pub fn src_mac(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(6..12)?.try_into().ok()
}

/// The EtherType and offset of the layer-3 header, skipping one 802.1Q tag.
pub fn l3(frame: &[u8]) -> Option<(u16, usize)> {
    let ty = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ty == ETHERTYPE_VLAN {
        let inner = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
        Some((inner, 18))
    } else {
        Some((ty, 14))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("00:ff:12:34:56:78", Some([0, 0xff, 0x12, 0x34, 0x56, 0x78]))]
    #[case("00:FF:12:34:56:7a", Some([0, 0xff, 0x12, 0x34, 0x56, 0x7a]))]
    #[case("00:ff:12:34:56", None)]
    #[case("00:ff:12:34:56:78:9a", None)]
    #[case("0:ff:12:34:56:78", None)]
    #[case("00-ff-12-34-56-78", None)]
    #[case("zz:ff:12:34:56:78", None)]
    fn mac_parsing(#[case] s: &str, #[case] want: Option<[u8; 6]>) {
        assert_eq!(parse_mac(s), want);
    }

    #[test]
    fn vlan_skipped() {
        let mut f = vec![0u8; 20];
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(l3(&f), Some((ETHERTYPE_IPV4, 18)));
        assert_eq!(l3(&f[..15]), None);
    }

    proptest! {
        #[test]
        fn mac_round_trip(mac in any::<[u8; 6]>()) {
            prop_assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        }
    }
}
