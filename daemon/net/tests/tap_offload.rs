//! The TAP's virtio-net header path against a real TAP in a network namespace:
//! a TSO super-frame and a partial checksum from the "guest" reach host
//! sockets, and headers refused (by us or by the kernel) are counted drops.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::Duration;

use colinux_net::vnet::{F_NEEDS_CSUM, GSO_TCPV4};
use colinux_net::{NetBackend, Offloads, TapBackend, VnetHdr};
use common::frames::{csum, parse_ipv4, pseudo, udp};
use common::tcp::{parse_tcp, tcp_frame, ACK, FIN, PSH, SYN};
use common::{root_or_skip, wait_frame, NetNs};

const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const T: Duration = Duration::from_secs(5);
/// Offsets in an untagged IPv4 frame with a 20-byte IP header.
const L4: u16 = 34;

/// A TAP named `name` in `ns`, host side 192.0.2.1/24, the guest's MAC known
/// to the host (no ARP needed); returns it with the host side's MAC.
fn tap_in(ns: &NetNs, name: &str) -> (TapBackend, [u8; 6]) {
    let n = name.to_string();
    let tap = ns.enter(move || TapBackend::open(Some(&n)).expect("open TAP"));
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", name]);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        name,
    ]);
    let link = ns.ip(&["-o", "link", "show", "dev", name]);
    let mac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|r| colinux_net::wire::parse_mac(&r[..17]))
        .expect("host side MAC");
    (tap, mac)
}

/// Replaces a frame's finished transport checksum by the pseudo-header seed a
/// guest leaves for the host when it offloads the checksum.
fn leave_checksum_partial(f: &mut [u8], proto: u8, at: usize) {
    let l4_len = f.len() - usize::from(L4);
    let seed = !csum(pseudo(GUEST_IP, HOST_IP, proto, l4_len), &[]);
    f[at..at + 2].copy_from_slice(&seed.to_be_bytes());
}

#[test]
fn offloads_are_offered() {
    if !root_or_skip("offloads_are_offered") {
        return;
    }
    let ns = NetNs::new("tapoffl");
    let (tap, _) = tap_in(&ns, "coltapo0");
    assert_eq!(tap.offloads(), Offloads::ALL);
}

#[test]
fn tso_super_frame_reaches_a_host_socket() {
    if !root_or_skip("tso_super_frame_reaches_a_host_socket") {
        return;
    }
    let ns = NetNs::new("taptso");
    let (mut tap, host_mac) = tap_in(&ns, "coltapo1");
    let listener = ns.enter(|| TcpListener::bind("192.0.2.1:5001").expect("listen"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(T)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    let me = (GUEST_IP, 40000);
    let host = (HOST_IP, 5001);
    let iss = 0x0100_0000u32;
    let syn = tcp_frame(host_mac, GUEST_MAC, me, host, iss, 0, SYN, &[]);
    tap.send(&syn).unwrap();
    let synack = wait_frame(&mut tap, T, |f| {
        parse_tcp(f).is_some_and(|s| s.flags & (SYN | ACK) == SYN | ACK)
    })
    .expect("SYN-ACK");
    let peer = parse_tcp(&synack).unwrap().seq.wrapping_add(1);
    let seq = iss.wrapping_add(1);
    tap.send(&tcp_frame(
        host_mac,
        GUEST_MAC,
        me,
        host,
        seq,
        peer,
        ACK,
        &[],
    ))
    .unwrap();

    // One 20 000-byte super-frame, MSS 1448, checksum left to the host.
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut big = tcp_frame(host_mac, GUEST_MAC, me, host, seq, peer, ACK | PSH, &data);
    leave_checksum_partial(&mut big, 6, usize::from(L4) + 16);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: L4 + 20,
        gso_size: 1448,
        csum_start: L4,
        csum_offset: 16,
    };
    assert!(big.len() > colinux_net::MAX_FRAME_LEN);
    tap.send_offloaded(&hdr, &big).unwrap();
    let fin_seq = seq.wrapping_add(data.len() as u32);
    tap.send(&tcp_frame(
        host_mac,
        GUEST_MAC,
        me,
        host,
        fin_seq,
        peer,
        ACK | FIN,
        &[],
    ))
    .unwrap();
    let got = server.join().expect("server thread");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream differs");
    let st = tap.stats();
    assert_eq!((st.tx_frames, st.tx_dropped), (4, 0), "{st:?}");
}

#[test]
fn partial_checksum_is_finished_by_the_host_and_refused_headers_are_counted() {
    if !root_or_skip("partial_checksum_is_finished_by_the_host") {
        return;
    }
    let ns = NetNs::new("tapcsum");
    let (mut tap, host_mac) = tap_in(&ns, "coltapo2");
    let sock = ns.enter(|| UdpSocket::bind("192.0.2.1:5002").expect("bind"));
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut f = udp(
        host_mac,
        GUEST_MAC,
        (GUEST_IP, 40001),
        (HOST_IP, 5002),
        b"partial",
    );
    leave_checksum_partial(&mut f, 17, usize::from(L4) + 6);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: L4,
        csum_offset: 6,
        ..VnetHdr::default()
    };
    let mut buf = [0u8; 64];
    // Sent as a finished frame, the seed is a wrong checksum: the host drops it.
    tap.send(&f).unwrap();
    assert!(
        sock.recv(&mut buf).is_err(),
        "bad checksum must not be delivered"
    );
    // With the header the host completes the checksum and delivers it.
    tap.send_offloaded(&hdr, &f).unwrap();
    let n = sock
        .recv(&mut buf)
        .expect("datagram with offloaded checksum");
    assert_eq!(&buf[..n], b"partial");
    let before = tap.stats();
    assert_eq!((before.tx_frames, before.tx_dropped), (2, 0), "{before:?}");

    // Refused by our own check (field outside the frame): counted, not an error.
    let outside = VnetHdr {
        csum_offset: 2000,
        ..hdr
    };
    tap.send_offloaded(&outside, &f).unwrap();
    // Refused by the kernel: hdr_len shorter than an Ethernet header (with
    // F_NEEDS_CSUM the kernel would raise it to cover the checksum field).
    let short = VnetHdr {
        hdr_len: 5,
        ..VnetHdr::default()
    };
    tap.send_offloaded(&short, &f).unwrap();
    let after = tap.stats();
    assert_eq!(after.tx_dropped, before.tx_dropped + 2, "{after:?}");
    assert!(sock.recv(&mut buf).is_err());
    // The TAP still works.
    tap.send_offloaded(&hdr, &f).unwrap();
    assert!(sock.recv(&mut buf).is_ok());
    assert!(parse_ipv4(&f).is_some());
}
