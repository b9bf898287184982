//! Tests of software checksum completion and segmentation.

use super::*;
use proptest::prelude::*;

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [192, 0, 2, 2];

fn eth(ty: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ty.to_be_bytes());
    f
}

/// A TCP/IPv4 (or IPv6) super-frame with `payload` behind one header.
fn tcp_frame(v6: bool, payload: &[u8], flags: u8) -> Vec<u8> {
    let mut f = eth(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 });
    let l4_len = 20 + payload.len();
    if v6 {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[IPPROTO_TCP, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
    }
    f.extend_from_slice(&[0x1f, 0x90, 0xc0, 0x00]); // ports 8080 -> 49152
    f.extend_from_slice(&0xfffffff0u32.to_be_bytes()); // seq wraps during the test
    f.extend_from_slice(&7u32.to_be_bytes()); // ack
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of a wire frame.
fn checksums_ok(f: &[u8]) -> bool {
    let (ty, l3) = wire::l3(f).unwrap();
    let (l4, pseudo) = if ty == ETHERTYPE_IPV4 {
        let ihl = usize::from(f[l3] & 15) * 4;
        if checksum::finish(checksum::add(0, &f[l3..l3 + ihl])) != 0 {
            return false;
        }
        let l4 = l3 + ihl;
        (
            l4,
            checksum::pseudo_v4(
                &f[l3 + 12..l3 + 16],
                &f[l3 + 16..l3 + 20],
                f[l3 + 9],
                f.len() - l4,
            ),
        )
    } else {
        let l4 = l3 + 40;
        (
            l4,
            checksum::pseudo_v6(
                &f[l3 + 8..l3 + 24],
                &f[l3 + 24..l3 + 40],
                f[l3 + 6],
                f.len() - l4,
            ),
        )
    };
    checksum::finish(checksum::add(pseudo, &f[l4..])) == 0
}

fn run(hdr: VnetHdr, frame: Vec<u8>) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut out = Vec::new();
    finish(&hdr, frame, |f| out.push(f))?;
    Ok(out)
}

proptest! {
    #[test]
    fn tcp_segments_rebuild_the_stream(
        v6 in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 1..9000),
        mss in 536u16..1461,
    ) {
        let ty = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, gso_type: ty, gso_size: mss, csum_start: 0, csum_offset: 16, hdr_len: 0 };
        let segs = run(hdr, tcp_frame(v6, &payload, 0x18 | 0x01 | 0x80)).unwrap();
        prop_assert_eq!(segs.len(), payload.len().div_ceil(usize::from(mss)));
        let hl = if v6 { 14 + 40 + 20 } else { 14 + 20 + 20 };
        let mut stream = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            prop_assert!(s.len() - hl <= usize::from(mss));
            prop_assert!(checksums_ok(s), "bad checksum in segment {}", i);
            let l4 = hl - 20;
            let seq = u32::from_be_bytes(s[l4 + 4..l4 + 8].try_into().unwrap());
            prop_assert_eq!(seq, 0xfffffff0u32.wrapping_add(stream.len() as u32));
            let flags = s[l4 + 13];
            let last = i + 1 == segs.len();
            prop_assert_eq!(flags & 0x09 != 0, last, "FIN/PSH only on the last segment");
            prop_assert_eq!(flags & 0x80 != 0, i == 0, "CWR only on the first segment");
            stream.extend_from_slice(&s[hl..]);
        }
        prop_assert_eq!(stream, payload);
    }

    #[test]
    fn garbage_never_panics(
        head in any::<[u8; VNET_HDR_LEN]>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = run(VnetHdr::parse(&head), body);
    }
}

#[test]
fn partial_udp_checksum_is_completed() {
    let payload = b"hello, offload";
    let mut f = eth(ETHERTYPE_IPV4);
    let udp_len = 8 + payload.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0]);
    f.extend_from_slice(&SRC4);
    f.extend_from_slice(&DST4);
    let c = checksum::finish(checksum::add(0, &f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // What the kernel leaves in the field: the folded, uncomplemented pseudo sum.
    let seed = !checksum::finish(checksum::pseudo_v4(&SRC4, &DST4, IPPROTO_UDP, udp_len));
    f.extend_from_slice(&seed.to_be_bytes());
    f.extend_from_slice(payload);
    assert!(!checksums_ok(&f));
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: 0,
        gso_size: 0,
        csum_start: 34,
        csum_offset: 6,
        hdr_len: 0,
    };
    let out = run(hdr, f).unwrap();
    assert_eq!(out.len(), 1);
    assert!(checksums_ok(&out[0]));
}

#[test]
fn plain_frame_passes_unchanged() {
    let f = tcp_frame(false, b"abc", 0x18);
    let out = run(VnetHdr::default(), f.clone()).unwrap();
    assert_eq!(out, vec![f]);
}

#[test]
fn mismatched_offload_is_rejected() {
    let f = tcp_frame(false, &[0u8; 3000], 0x10);
    let hdr = VnetHdr {
        gso_type: GSO_TCPV6,
        gso_size: 1400,
        ..Default::default()
    };
    assert!(matches!(
        run(hdr, f.clone()),
        Err(OffloadError::Malformed(_))
    ));
    let hdr = VnetHdr {
        gso_type: 3,
        gso_size: 1400,
        ..Default::default()
    };
    assert_eq!(run(hdr, f), Err(OffloadError::Unsupported(3)));
}

#[test]
fn header_round_trips() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 4,
        gso_size: 1448,
        csum_start: 54,
        csum_offset: 16,
        hdr_len: 66,
    };
    assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
}
