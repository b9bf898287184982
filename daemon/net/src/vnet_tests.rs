//! Tests of the virtio-net header checks a guest's frames must pass.

use super::*;
use proptest::prelude::*;
use rstest::rstest;

/// An Ethernet frame of `len` bytes carrying IPv4/TCP (or IPv6/TCP) headers.
fn tcp_frame(v6: bool, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(74)];
    f[12..14].copy_from_slice(&(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 }).to_be_bytes());
    if v6 {
        f[14] = 0x60;
        f[14 + 6] = IPPROTO_TCP;
    } else {
        f[14] = 0x45;
        f[14 + 9] = IPPROTO_TCP;
    }
    f.truncate(len);
    f
}

/// What a Linux guest sends for a TSO super-frame.
fn tso_hdr(v6: bool) -> VnetHdr {
    let l4 = if v6 { 54 } else { 34 };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: l4 + 20,
        gso_size: 1448,
        csum_start: l4,
        csum_offset: 16,
    }
}

fn csum_only() -> Offloads {
    Offloads {
        csum: true,
        ..Offloads::NONE
    }
}

#[test]
fn plain_frames_pass_without_offloads_within_wire_lengths() {
    let h = VnetHdr::default();
    for len in [MIN_FRAME_LEN, 60, 1514, MAX_FRAME_LEN] {
        assert_eq!(h.check_tx(&vec![0; len], Offloads::NONE), Ok(()), "{len}");
    }
    for len in [0, MIN_FRAME_LEN - 1, MAX_FRAME_LEN + 1, 9000] {
        assert_eq!(
            h.check_tx(&vec![0; len], Offloads::ALL),
            Err(VnetError::Length(len)),
            "a plain frame stays wire-sized even with TSO on"
        );
    }
}

#[test]
fn partial_checksum_needs_the_feature_and_a_field_inside_the_frame() {
    let f = tcp_frame(false, 100);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    assert_eq!(
        h.check_tx(&f, Offloads::NONE),
        Err(VnetError::NotNegotiated("checksum"))
    );
    assert_eq!(h.check_tx(&f, csum_only()), Ok(()));
    // The 2-byte field must end inside the frame.
    let at_end = VnetHdr {
        csum_offset: 100 - 34 - 2,
        ..h
    };
    assert_eq!(at_end.check_tx(&f, csum_only()), Ok(()));
    for bad in [
        VnetHdr {
            csum_offset: 100 - 34 - 1,
            ..h
        },
        VnetHdr {
            csum_start: u16::MAX,
            csum_offset: u16::MAX,
            ..h
        },
        VnetHdr { csum_start: 6, ..h },
    ] {
        assert!(
            matches!(bad.check_tx(&f, csum_only()), Err(VnetError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[rstest]
#[case::data_valid(F_DATA_VALID)]
#[case::rsc_info(4)]
#[case::high(0x80)]
#[case::all(0xff)]
fn flags_other_than_needs_csum_are_refused(#[case] flags: u8) {
    let h = VnetHdr {
        flags,
        ..VnetHdr::default()
    };
    assert_eq!(
        h.check_tx(&tcp_frame(false, 60), Offloads::ALL),
        Err(VnetError::Flags(flags))
    );
}

#[rstest]
#[case::v4(false)]
#[case::v6(true)]
fn tso_super_frames_up_to_the_limit(#[case] v6: bool) {
    let h = tso_hdr(v6);
    for len in [200, MAX_FRAME_LEN + 1, 65536, MAX_GSO_FRAME_LEN] {
        assert_eq!(
            h.check_tx(&tcp_frame(v6, len), Offloads::ALL),
            Ok(()),
            "{len}"
        );
    }
    let too_long = MAX_GSO_FRAME_LEN + 1;
    assert_eq!(
        h.check_tx(&tcp_frame(v6, too_long), Offloads::ALL),
        Err(VnetError::Length(too_long))
    );
}

#[test]
fn tso_needs_its_own_feature() {
    let f4 = tcp_frame(false, 3000);
    let f6 = tcp_frame(true, 3000);
    let only4 = Offloads {
        tso4: true,
        ..csum_only()
    };
    assert_eq!(tso_hdr(false).check_tx(&f4, only4), Ok(()));
    assert!(matches!(
        tso_hdr(true).check_tx(&f6, only4),
        Err(VnetError::NotNegotiated(_))
    ));
    assert!(matches!(
        tso_hdr(false).check_tx(&f4, csum_only()),
        Err(VnetError::NotNegotiated(_))
    ));
    let ecn = VnetHdr {
        gso_type: GSO_TCPV4 | GSO_ECN,
        ..tso_hdr(false)
    };
    assert!(matches!(
        ecn.check_tx(&f4, only4),
        Err(VnetError::NotNegotiated(_))
    ));
    assert_eq!(ecn.check_tx(&f4, Offloads::ALL), Ok(()));
}

#[test]
fn malformed_tso_headers_are_refused() {
    let f4 = tcp_frame(false, 3000);
    let all = Offloads::ALL;
    let malformed =
        |h: VnetHdr, f: &[u8]| matches!(h.check_tx(f, all), Err(VnetError::Malformed(_)));
    let h = tso_hdr(false);
    assert!(malformed(VnetHdr { gso_size: 0, ..h }, &f4));
    assert!(
        malformed(VnetHdr { flags: 0, ..h }, &f4),
        "TSO without F_NEEDS_CSUM"
    );
    assert!(malformed(VnetHdr { hdr_len: 3001, ..h }, &f4));
    assert!(malformed(h, &tcp_frame(true, 3000)), "TCPV4 over IPv6");
    assert!(malformed(tso_hdr(true), &f4), "TCPV6 over IPv4");
    let mut udp = f4.clone();
    udp[14 + 9] = 17;
    assert!(malformed(h, &udp), "TCPV4 over UDP");
    let mut bad_ihl = f4.clone();
    bad_ihl[14] = 0x44;
    assert!(malformed(h, &bad_ihl));
    let ecn_alone = VnetHdr {
        gso_type: GSO_ECN,
        ..VnetHdr::default()
    };
    assert!(malformed(ecn_alone, &f4[..60]));
}

#[rstest]
#[case::ufo(GSO_UDP)]
#[case::uso(GSO_UDP_L4)]
#[case::two(2)]
#[case::unknown(0x7f)]
fn segmentation_types_never_offered_are_refused(#[case] ty: u8) {
    let h = VnetHdr {
        gso_type: ty,
        ..tso_hdr(false)
    };
    assert_eq!(
        h.check_tx(&tcp_frame(false, 3000), Offloads::ALL),
        Err(VnetError::GsoType(ty))
    );
}

#[test]
fn header_bytes_are_little_endian() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 0x0102,
        gso_size: 0x0304,
        csum_start: 0x0506,
        csum_offset: 0x0708,
    };
    assert_eq!(h.to_bytes(), [1, 4, 2, 1, 4, 3, 6, 5, 8, 7]);
}

#[test]
fn offload_sets_follow_virtio_dependencies() {
    let tso_no_csum = Offloads {
        tso4: true,
        tso6: true,
        tso_ecn: true,
        ..Offloads::NONE
    };
    assert_eq!(tso_no_csum.normalized(), Offloads::NONE);
    let ecn_no_tso = Offloads {
        tso_ecn: true,
        ..csum_only()
    };
    assert_eq!(ecn_no_tso.normalized(), csum_only());
    assert_eq!(Offloads::ALL.normalized(), Offloads::ALL);
    assert_eq!(Offloads::ALL.intersect(csum_only()), csum_only());
    assert!(!Offloads::NONE.any() && Offloads::ALL.tso());
    assert_eq!(Offloads::NONE.max_frame_len(), MAX_FRAME_LEN);
    assert_eq!(Offloads::ALL.max_frame_len(), MAX_GSO_FRAME_LEN);
}

proptest! {
    #[test]
    fn header_round_trips(b in any::<[u8; VNET_HDR_LEN]>()) {
        prop_assert_eq!(VnetHdr::parse(&b).to_bytes(), b);
    }

    /// Whatever a guest writes, the check returns (never panics), and what it
    /// accepts stays within what was negotiated and within the length limits.
    #[test]
    fn hostile_headers_never_panic_and_accepted_ones_are_sane(
        head in any::<[u8; VNET_HDR_LEN]>(),
        len in 0usize..70_000,
        v6 in any::<bool>(),
        offered in any::<[bool; 4]>(),
    ) {
        let allowed = Offloads { csum: offered[0], tso4: offered[1], tso6: offered[2], tso_ecn: offered[3] }.normalized();
        let h = VnetHdr::parse(&head);
        let frame = tcp_frame(v6, len);
        if h.check_tx(&frame, allowed).is_ok() {
            prop_assert!(h.flags & !F_NEEDS_CSUM == 0);
            prop_assert!(allowed.csum || h.flags == 0);
            prop_assert!(frame.len() >= MIN_FRAME_LEN && frame.len() <= allowed.max_frame_len());
            if h.gso_type == GSO_NONE {
                prop_assert!(frame.len() <= MAX_FRAME_LEN);
            } else {
                prop_assert!(allowed.tso() && h.gso_size > 0);
            }
        }
    }
}
