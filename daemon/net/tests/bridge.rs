//! AF_PACKET bridge against a veth pair inside a network namespace the test
//! creates: one end is bridged, the other end plays the LAN.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use colinux_net::{NetBackend, PacketBridge, MAX_FRAME_LEN};
use common::frames::{arp_reply_from, arp_request, icmp_echo, parse_ipv4, udp};
use common::tcp::accept_stream;
use common::{readable, root_or_skip, wait_frame, NetNs};

const GUEST_MAC: [u8; 6] = [0x00, 0xff, 0x12, 0x34, 0x56, 0x78];
const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const T: Duration = Duration::from_secs(5);

/// A namespace with veth `brport` (bridged) <-> `lan0` (192.0.2.1/24).
fn lan() -> NetNs {
    let ns = NetNs::new("br");
    ns.ip(&[
        "link", "add", "brport", "type", "veth", "peer", "name", "lan0",
    ]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "lan0"]);
    ns.ip(&["link", "set", "lan0", "up"]);
    ns.ip(&["link", "set", "brport", "up"]);
    ns
}

fn bridge(ns: &NetNs, promisc: bool) -> PacketBridge {
    ns.enter(move || PacketBridge::open("brport", GUEST_MAC, promisc).expect("open bridge"))
}

/// Waits up to 2 s for `brport`'s promiscuity count to reach `want` (the
/// kernel may finish a socket's release just after `close` returns when the
/// machine is loaded); returns the last count seen.
fn promiscuity_settles(ns: &NetNs, want: u32) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let n = promiscuity(ns);
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The kernel's promiscuity count of `brport` (`ip -d link` shows it).
fn promiscuity(ns: &NetNs) -> u32 {
    let out = ns.ip(&["-d", "link", "show", "brport"]);
    let mut w = out.split_whitespace();
    w.find(|&x| x == "promiscuity")
        .and_then(|_| w.next())
        .and_then(|n| n.parse().ok())
        .expect("promiscuity in ip -d output")
}

fn arp_and_ping(b: &mut dyn NetBackend) -> [u8; 6] {
    // A fresh link may drop the first frames while its carrier comes up:
    // retry like a real ARP client.
    let reply = (0..10)
        .find_map(|_| {
            b.send(&arp_request(GUEST_MAC, GUEST_IP, LAN_IP)).unwrap();
            wait_frame(b, Duration::from_millis(500), |f| {
                arp_reply_from(f, LAN_IP).is_some()
            })
        })
        .expect("ARP reply");
    let lan_mac = arp_reply_from(&reply, LAN_IP).unwrap();
    let data = [0xa5u8; 100];
    b.send(&icmp_echo(
        lan_mac, GUEST_MAC, GUEST_IP, LAN_IP, 9, 1, &data,
    ))
    .unwrap();
    let echo = wait_frame(b, T, |f| {
        parse_ipv4(f).is_some_and(|ip| ip.proto == 1 && ip.src == LAN_IP && ip.l4[0] == 0)
    })
    .expect("ICMP echo reply");
    assert_eq!(&parse_ipv4(&echo).unwrap().l4[8..], &data);
    lan_mac
}

#[test]
fn arp_and_ping_across_the_bridge_promiscuous() {
    if !root_or_skip("arp_and_ping_across_the_bridge_promiscuous") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, true);
    assert_eq!(promiscuity(&ns), 1, "promiscuous while bridged");
    arp_and_ping(&mut b);
    drop(b);
    assert_eq!(
        promiscuity_settles(&ns, 0),
        0,
        "promiscuity dropped on close"
    );
}

#[test]
fn arp_and_ping_across_the_bridge_nopromisc() {
    if !root_or_skip("arp_and_ping_across_the_bridge_nopromisc") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, false);
    // veth has no unicast filter, so the kernel turns the guest MAC entry into
    // promiscuity itself; what matters is that it is undone on close.
    arp_and_ping(&mut b);
    drop(b);
    assert_eq!(
        promiscuity_settles(&ns, 0),
        0,
        "promiscuity undone on close"
    );
}

#[test]
fn own_frames_and_other_hosts_frames_are_not_delivered() {
    if !root_or_skip("own_frames_and_other_hosts_frames_are_not_delivered") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, true);
    // Our own broadcast must not come back (PACKET_OUTGOING).
    b.send(&arp_request(
        GUEST_MAC,
        GUEST_IP,
        Ipv4Addr::new(192, 0, 2, 99),
    ))
    .unwrap();
    assert!(wait_frame(&mut b, Duration::from_millis(300), |f| f[6..12]
        == GUEST_MAC)
    .is_none());
    // A unicast to another MAC from the LAN side is filtered; one to us arrives.
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.50",
        "lladdr",
        "02:00:00:00:00:50",
        "dev",
        "lan0",
    ]);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "00:ff:12:34:56:78",
        "dev",
        "lan0",
    ]);
    let sock = ns.enter(|| {
        let s = std::net::UdpSocket::bind("192.0.2.1:0").unwrap();
        s.send_to(b"not-for-guest", "192.0.2.50:9").unwrap();
        s.send_to(b"for-guest", "192.0.2.2:9").unwrap();
        s.local_addr().unwrap()
    });
    let got = wait_frame(&mut b, T, |f| {
        parse_ipv4(f).is_some_and(|ip| ip.proto == 17)
    })
    .expect("UDP to guest");
    let ip = parse_ipv4(&got).unwrap();
    assert_eq!(ip.dst, GUEST_IP);
    assert_eq!(&ip.l4[8..], b"for-guest");
    // The kernel left the UDP checksum to "hardware": the bridge filled it in.
    assert!(common::frames::l4_csum_ok(&ip), "UDP checksum completed");
    assert_eq!(u16::from_be_bytes([ip.l4[0], ip.l4[1]]), sock.port());
    assert!(wait_frame(&mut b, Duration::from_millis(300), |f| f
        .windows(13)
        .any(|w| w == b"not-for-guest"))
    .is_none());
}

#[test]
fn offloaded_tcp_stream_reaches_the_guest_as_wire_frames() {
    if !root_or_skip("offloaded_tcp_stream_reaches_the_guest_as_wire_frames") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, true);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "00:ff:12:34:56:78",
        "dev",
        "lan0",
    ]);
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let send = payload.clone();
    let sender = ns.spawn(move || {
        let addr: SocketAddr = "192.0.2.2:5001".parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, T).expect("connect to guest");
        s.write_all(&send).expect("write");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep the socket until the guest side has seen FIN.
        std::thread::sleep(Duration::from_millis(500));
    });
    let rep = accept_stream(&mut b, GUEST_MAC, (GUEST_IP, 5001), Duration::from_secs(30));
    sender.join().unwrap();
    assert!(
        rep.fin,
        "stream ended with FIN ({} bytes so far)",
        rep.data.len()
    );
    assert_eq!(rep.bad_csum, 0, "every segment's checksums verify");
    assert!(
        rep.max_frame <= MAX_FRAME_LEN,
        "frames cut to wire size, saw {}",
        rep.max_frame
    );
    assert_eq!(rep.data.len(), payload.len());
    assert!(rep.data == payload, "stream content matches");
    eprintln!("{} frames, {:?}", rep.frames, b.stats());
}

#[test]
fn vanished_interface_reports_errors_and_goes_quiet() {
    if !root_or_skip("vanished_interface_reports_errors_and_goes_quiet") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, true);
    arp_and_ping(&mut b);
    ns.ip(&["link", "del", "lan0"]); // takes brport with it
    let mut buf = [0u8; 2048];
    let frame = udp(
        [0xff; 6],
        GUEST_MAC,
        (GUEST_IP, 1),
        (Ipv4Addr::BROADCAST, 9),
        b"x",
    );
    let mut errored = false;
    for _ in 0..3 {
        errored |= b.recv(&mut buf).is_err();
        errored |= b.send(&frame).is_err();
    }
    assert!(errored, "a vanished interface must surface as an error");
    assert!(b.send(&frame).is_err());
    assert!(b.recv(&mut buf).is_err());
    assert!(!readable(b.ready_fd()));
}

#[test]
fn constructor_opens_ndis_bridge_nopromisc() {
    if !root_or_skip("constructor_opens_ndis_bridge_nopromisc") {
        return;
    }
    let ns = lan();
    let spec = colinux_net::NicSpec {
        host_interface: Some("brport".into()),
        promiscuous: false,
        ..colinux_net::NicSpec::new(colinux_net::NetKind::NdisBridge, GUEST_MAC)
    };
    let mut b = ns.enter(move || colinux_net::open_backend(&spec).expect("open ndis-bridge"));
    arp_and_ping(b.as_mut());
    // A missing interface is a clear error naming it.
    let bad = colinux_net::NicSpec {
        host_interface: Some("nosuch0".into()),
        ..colinux_net::NicSpec::new(colinux_net::NetKind::PcapBridge, GUEST_MAC)
    };
    let e = ns.enter(move || colinux_net::open_backend(&bad).err().expect("must fail"));
    assert!(e.to_string().contains("nosuch0"), "{e}");
}

#[test]
fn interface_down_drops_frames_and_recovers_when_up() {
    if !root_or_skip("interface_down_drops_frames_and_recovers_when_up") {
        return;
    }
    let ns = lan();
    let mut b = bridge(&ns, true);
    arp_and_ping(&mut b);
    ns.ip(&["link", "set", "brport", "down"]);
    let before = b.stats().tx_dropped;
    let probe = arp_request(GUEST_MAC, GUEST_IP, LAN_IP);
    b.send(&probe).expect("a down interface is not fatal");
    let mut buf = [0u8; 2048];
    assert!(
        b.recv(&mut buf).is_ok(),
        "recv on a down interface is not fatal"
    );
    assert_eq!(
        b.stats().tx_dropped,
        before + 1,
        "the frame is counted as dropped"
    );
    ns.ip(&["link", "set", "brport", "up"]);
    // The veth link needs a moment to come back before frames pass.
    let mut ok = false;
    for _ in 0..20 {
        b.send(&probe).unwrap();
        if wait_frame(&mut b, Duration::from_millis(250), |f| {
            arp_reply_from(f, LAN_IP).is_some()
        })
        .is_some()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "traffic resumes once the interface is up again");
}
