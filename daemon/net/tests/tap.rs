//! TAP backend against a real TAP device inside a network namespace the test
//! creates: ARP and ICMP echo answered by the namespace's kernel.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use colinux_net::{open_backend, NetBackend, NetKind, NicSpec, TapBackend};
use common::frames::{arp_reply_from, arp_request, icmp_echo, parse_ipv4};
use common::{link_exists, readable, root_or_skip, wait_frame, NetNs};

const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const T: Duration = Duration::from_secs(5);

/// Opens a TAP named `name` inside `ns` and gives the host side 192.0.2.1/24.
fn tap_in(ns: &NetNs, name: &str) -> TapBackend {
    let n = name.to_string();
    let tap = ns.enter(move || TapBackend::open(Some(&n)).expect("open TAP"));
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", name]);
    tap
}

/// ARP for the host side, then ping it; returns the host side's MAC.
fn arp_and_ping(b: &mut dyn NetBackend) -> [u8; 6] {
    // A fresh link may drop the first frames while its carrier comes up:
    // retry like a real ARP client.
    let reply = (0..10)
        .find_map(|_| {
            b.send(&arp_request(GUEST_MAC, GUEST_IP, HOST_IP)).unwrap();
            wait_frame(b, Duration::from_millis(500), |f| {
                arp_reply_from(f, HOST_IP).is_some()
            })
        })
        .expect("ARP reply");
    let host_mac = arp_reply_from(&reply, HOST_IP).unwrap();
    assert_eq!(&reply[0..6], &GUEST_MAC, "ARP reply addressed to the guest");
    let data = b"colinux-ping-payload";
    b.send(&icmp_echo(
        host_mac, GUEST_MAC, GUEST_IP, HOST_IP, 0x4242, 7, data,
    ))
    .unwrap();
    let echo = wait_frame(b, T, |f| {
        parse_ipv4(f).is_some_and(|ip| ip.proto == 1 && ip.src == HOST_IP && ip.l4[0] == 0)
    })
    .expect("ICMP echo reply");
    let ip = parse_ipv4(&echo).unwrap();
    assert!(ip.hdr_ok);
    assert_eq!(ip.dst, GUEST_IP);
    assert_eq!(&ip.l4[4..6], &0x4242u16.to_be_bytes());
    assert_eq!(&ip.l4[6..8], &7u16.to_be_bytes());
    assert_eq!(&ip.l4[8..], data);
    host_mac
}

#[test]
fn arp_and_ping_through_tap() {
    if !root_or_skip("arp_and_ping_through_tap") {
        return;
    }
    let ns = NetNs::new("tap");
    let mut tap = tap_in(&ns, "coltap0");
    assert!(tap.created());
    assert_eq!(tap.name(), "coltap0");
    assert!(
        ns.ip(&["link", "show", "coltap0"]).contains("UP"),
        "TAP brought up"
    );
    arp_and_ping(&mut tap);
    let st = tap.stats();
    assert!(st.tx_frames >= 2 && st.tx_dropped == 0, "{st:?}");
    assert!(st.rx_frames >= 2, "{st:?}");
}

#[test]
fn generated_name_and_removal_on_close() {
    if !root_or_skip("generated_name_and_removal_on_close") {
        return;
    }
    let ns = NetNs::new("tapname");
    let spec = NicSpec::new(NetKind::Tuntap, GUEST_MAC);
    let b = ns.enter(move || open_backend(&spec).expect("open"));
    let links = ns.ip(&["-o", "link", "show"]);
    let name = links
        .split_whitespace()
        .find_map(|w| w.strip_suffix(':').filter(|n| n.starts_with("colinux")))
        .expect("a colinuxN device")
        .to_string();
    assert!(name["colinux".len()..].parse::<u32>().is_ok(), "{name}");
    drop(b);
    assert!(
        !link_exists(&ns, &name),
        "{name} should vanish with the backend"
    );
}

#[test]
fn persistent_tap_is_left_in_place() {
    if !root_or_skip("persistent_tap_is_left_in_place") {
        return;
    }
    let ns = NetNs::new("tappers");
    ns.ip(&["tuntap", "add", "dev", "ptap0", "mode", "tap"]);
    let mut tap = tap_in(&ns, "ptap0");
    assert!(!tap.created());
    arp_and_ping(&mut tap);
    drop(tap);
    assert!(link_exists(&ns, "ptap0"), "persistent TAP must stay");
}

#[test]
fn bad_frames_are_counted_and_dropped() {
    if !root_or_skip("bad_frames_are_counted_and_dropped") {
        return;
    }
    let ns = NetNs::new("tapbad");
    let mut tap = tap_in(&ns, "coltap1");
    tap.send(&[0u8; 10]).unwrap();
    tap.send(&vec![0u8; colinux_net::MAX_FRAME_LEN + 1])
        .unwrap();
    let st = tap.stats();
    assert_eq!((st.tx_frames, st.tx_dropped), (0, 2));
    // The device still works afterwards.
    arp_and_ping(&mut tap);
}

#[test]
fn deleted_tap_reports_errors_and_goes_quiet() {
    if !root_or_skip("deleted_tap_reports_errors_and_goes_quiet") {
        return;
    }
    let ns = NetNs::new("tapdel");
    let mut tap = tap_in(&ns, "coltap2");
    arp_and_ping(&mut tap);
    ns.ip(&["link", "del", "coltap2"]);
    let mut buf = [0u8; 2048];
    let first = tap.recv(&mut buf);
    let send = tap.send(&arp_request(GUEST_MAC, GUEST_IP, HOST_IP));
    assert!(
        first.is_err() || send.is_err(),
        "deleted TAP must report an error"
    );
    assert!(tap
        .send(&arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
        .is_err());
    assert!(tap.recv(&mut buf).is_err());
    assert!(
        !readable(tap.ready_fd()),
        "a failed TAP must not keep waking the device"
    );
}

#[test]
fn oversize_frames_from_the_host_are_counted_and_dropped() {
    if !root_or_skip("oversize_frames_from_the_host_are_counted_and_dropped") {
        return;
    }
    let ns = NetNs::new("tapbig");
    let mut tap = tap_in(&ns, "coltap3");
    // A jumbo MTU on the host side lets the kernel hand over frames longer
    // than any guest NIC frame.
    ns.ip(&["link", "set", "coltap3", "mtu", "9000"]);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "coltap3",
    ]);
    ns.enter(|| {
        let s = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
        s.send_to(&[0x5a; 4000], "192.0.2.2:9").unwrap();
        s.send_to(b"small", "192.0.2.2:9").unwrap();
    });
    let got = wait_frame(&mut tap, T, |f| {
        parse_ipv4(f).is_some_and(|ip| ip.proto == 17)
    })
    .expect("small datagram");
    assert_eq!(&parse_ipv4(&got).unwrap().l4[8..], b"small");
    assert!(got.len() <= colinux_net::MAX_FRAME_LEN);
    assert_eq!(tap.stats().rx_dropped, 1, "{:?}", tap.stats());
}

#[test]
fn tap_down_drops_frames_and_recovers_when_up() {
    if !root_or_skip("tap_down_drops_frames_and_recovers_when_up") {
        return;
    }
    let ns = NetNs::new("tapdown");
    let mut tap = tap_in(&ns, "coltap4");
    arp_and_ping(&mut tap);
    ns.ip(&["link", "set", "coltap4", "down"]);
    let before = tap.stats().tx_dropped;
    tap.send(&arp_request(GUEST_MAC, GUEST_IP, HOST_IP))
        .expect("a down TAP is not fatal");
    assert_eq!(tap.stats().tx_dropped, before + 1);
    ns.ip(&["link", "set", "coltap4", "up"]);
    arp_and_ping(&mut tap);
}
