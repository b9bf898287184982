//! slirp backend against the real libslirp: DHCP, ARP for the gateway, and
//! host→guest port redirections on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use colinux_net::{
    open_backend, NetBackend, NetError, NetKind, NicSpec, Protocol, Redirection, SlirpBackend,
    SLIRP_DNS, SLIRP_GATEWAY, SLIRP_GUEST,
};
use common::frames::{arp_reply_from, arp_request, dhcp_discover, parse_dhcp_reply};
use common::tcp::{parse_tcp, tcp_frame, ACK, PSH, SYN};
use common::wait_frame;

const GUEST_MAC: [u8; 6] = [0x00, 0xff, 0xaa, 0xbb, 0xcc, 0x01];
const T: Duration = Duration::from_secs(5);

fn tcp_redir(host: u16, guest: u16, count: u16) -> Redirection {
    Redirection {
        protocol: Protocol::Tcp,
        host_port: host,
        guest_port: guest,
        count,
    }
}

/// A currently free port on 127.0.0.1 with `n` free successors (best effort).
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p > 65000 {
            continue;
        }
        let ok = (1..n).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free port range");
}

/// Teaches slirp the guest's MAC (ARP for the gateway) and returns slirp's MAC.
fn arp_gateway(b: &mut dyn NetBackend) -> [u8; 6] {
    b.send(&arp_request(GUEST_MAC, SLIRP_GUEST, SLIRP_GATEWAY))
        .unwrap();
    let r = wait_frame(b, T, |f| arp_reply_from(f, SLIRP_GATEWAY).is_some())
        .expect("ARP reply from 10.0.2.2");
    arp_reply_from(&r, SLIRP_GATEWAY).unwrap()
}

#[test]
fn dhcp_discover_gets_an_offer_for_10_0_2_15() {
    let mut b = SlirpBackend::new(&[], Ipv4Addr::LOCALHOST).expect("slirp");
    b.send(&dhcp_discover(GUEST_MAC, 0xC0_11_0A_07)).unwrap();
    let f = wait_frame(&mut b, T, |f| parse_dhcp_reply(f).is_some()).expect("DHCP reply");
    let r = parse_dhcp_reply(&f).unwrap();
    assert_eq!(r.xid, 0xC0_11_0A_07);
    assert_eq!(r.option(53), Some(&[2u8][..]), "DHCPOFFER");
    assert_eq!(r.yiaddr, SLIRP_GUEST);
    assert_eq!(r.option(3), Some(&SLIRP_GATEWAY.octets()[..]), "router");
    assert_eq!(r.option(6), Some(&SLIRP_DNS.octets()[..]), "DNS");
    // libslirp sends offers to the Ethernet broadcast address.
    assert!(
        f[0..6] == GUEST_MAC || f[0..6] == [0xff; 6],
        "offer on the wire to the client"
    );
    let st = b.stats();
    assert_eq!(st.tx_frames, 1);
    assert!(st.rx_frames >= 1);
}

/// The threads of this process, from /proc/self/status.
fn thread_count() -> usize {
    let st = std::fs::read_to_string("/proc/self/status").unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc/self/status")
}

#[test]
fn slirp_runs_on_the_callers_thread() {
    // libslirp lives where the backend is driven (the NIC's thread): no
    // thread of its own, so a guest frame reaches it without a hop.
    let before = thread_count();
    let mut b = SlirpBackend::new(&[], Ipv4Addr::LOCALHOST).expect("slirp");
    assert_eq!(thread_count(), before, "SlirpBackend::new started a thread");
    // It still answers at once, from inside send().
    b.send(&dhcp_discover(GUEST_MAC, 7)).unwrap();
    let mut buf = vec![0u8; 2048];
    let n = b
        .recv(&mut buf)
        .unwrap()
        .expect("the offer is queued by send itself");
    assert!(parse_dhcp_reply(&buf[..n]).is_some());
    assert_eq!(thread_count(), before);
}

#[test]
fn gateway_answers_arp() {
    let mut b = SlirpBackend::new(&[], Ipv4Addr::LOCALHOST).expect("slirp");
    let mac = arp_gateway(&mut b);
    assert_ne!(mac, [0; 6]);
    assert_ne!(mac, GUEST_MAC);
}

#[test]
fn host_port_redirection_reaches_the_guest_and_carries_data() {
    let port = free_ports(1);
    let spec = NicSpec {
        redirections: vec![tcp_redir(port, 2222, 1)],
        ..NicSpec::new(NetKind::Slirp, GUEST_MAC)
    };
    let mut b = open_backend(&spec).expect("slirp with redirection");
    let slirp_mac = arp_gateway(b.as_mut());
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), T)
            .expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"hello guest").unwrap();
        let mut back = [0u8; 10];
        s.read_exact(&mut back).unwrap();
        back
    });
    let syn = wait_frame(b.as_mut(), T, |f| {
        parse_tcp(f).is_some_and(|s| s.flags & SYN != 0)
    })
    .expect("SYN toward the guest");
    let syn = parse_tcp(&syn).unwrap();
    assert_eq!(syn.dst, (SLIRP_GUEST, 2222), "SYN to the guest port");
    assert!(syn.csum_ok);
    assert_eq!(syn.src.0, SLIRP_GATEWAY);
    // Finish the handshake as the guest and echo the data back.
    let me = (SLIRP_GUEST, 2222);
    let iss = 5000u32;
    b.send(&tcp_frame(
        slirp_mac,
        GUEST_MAC,
        me,
        syn.src,
        iss,
        syn.seq.wrapping_add(1),
        SYN | ACK,
        &[],
    ))
    .unwrap();
    let data = wait_frame(b.as_mut(), T, |f| {
        parse_tcp(f).is_some_and(|s| !s.payload.is_empty())
    })
    .expect("data toward the guest");
    let data = parse_tcp(&data).unwrap();
    assert_eq!(data.payload, b"hello guest");
    let ack = data.seq.wrapping_add(data.payload.len() as u32);
    b.send(&tcp_frame(
        slirp_mac,
        GUEST_MAC,
        me,
        syn.src,
        iss + 1,
        ack,
        ACK | PSH,
        b"hello host",
    ))
    .unwrap();
    assert_eq!(&client.join().unwrap(), b"hello host");
}

#[test]
fn redirection_count_forwards_a_range() {
    let port = free_ports(3);
    let mut b = SlirpBackend::new(&[tcp_redir(port, 3000, 3)], Ipv4Addr::LOCALHOST).expect("slirp");
    arp_gateway(&mut b);
    for i in 0..3u16 {
        let p = port + i;
        let c = std::thread::spawn(move || TcpStream::connect(("127.0.0.1", p)).map(|_| ()));
        let syn = wait_frame(&mut b, T, |f| {
            parse_tcp(f).is_some_and(|s| s.flags & SYN != 0 && s.dst.1 == 3000 + i)
        })
        .unwrap_or_else(|| panic!("SYN for guest port {}", 3000 + i));
        assert_eq!(parse_tcp(&syn).unwrap().dst.0, SLIRP_GUEST);
        c.join().unwrap().expect("host side connects");
    }
}

#[test]
fn busy_host_port_is_a_clear_error() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let e = SlirpBackend::new(&[tcp_redir(port, 22, 1)], Ipv4Addr::LOCALHOST)
        .err()
        .expect("must fail");
    assert!(matches!(e, NetError::RedirectFailed(_)), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[test]
fn bad_frames_are_counted_and_closing_stops_forwarding() {
    let port = free_ports(1);
    let mut b = SlirpBackend::new(&[tcp_redir(port, 22, 1)], Ipv4Addr::LOCALHOST).expect("slirp");
    b.send(&[0u8; 5]).unwrap();
    b.send(&vec![0u8; 4000]).unwrap();
    let st = b.stats();
    assert_eq!((st.tx_frames, st.tx_dropped), (0, 2));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "listening while open"
    );
    drop(b);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port closed with the backend"
    );
}

#[test]
fn garbage_from_the_guest_does_not_break_slirp() {
    let mut b = SlirpBackend::new(&[], Ipv4Addr::LOCALHOST).expect("slirp");
    let mut x = 0x1234_5678u32;
    for len in 14..400usize {
        let mut f: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        // Half of them claim IPv4 or ARP so slirp parses further.
        if len % 2 == 0 {
            f[12..14].copy_from_slice(if len % 4 == 0 { &[8, 0] } else { &[8, 6] });
        }
        b.send(&f).unwrap();
        if len % 64 == 0 {
            // Let the slirp thread drain its queue so nothing is dropped for space.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(b.stats().tx_dropped, 0, "all frames reached slirp");
    // Still alive and serving DHCP.
    b.send(&dhcp_discover(GUEST_MAC, 77)).unwrap();
    assert!(wait_frame(&mut b, T, |f| parse_dhcp_reply(f)
        .is_some_and(|r| r.xid == 77))
    .is_some());
}

#[test]
fn udp_redirection_delivers_datagrams_to_the_guest() {
    // A free UDP port on 127.0.0.1.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let red = Redirection {
        protocol: Protocol::Udp,
        host_port: port,
        guest_port: 5353,
        count: 1,
    };
    let mut b = SlirpBackend::new(&[red], Ipv4Addr::LOCALHOST).expect("slirp");
    arp_gateway(&mut b);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"datagram for the guest", ("127.0.0.1", port))
        .unwrap();
    let f = wait_frame(&mut b, T, |f| {
        common::frames::parse_ipv4(f)
            .is_some_and(|ip| ip.proto == 17 && ip.l4[2..4] == 5353u16.to_be_bytes())
    })
    .expect("UDP frame to guest port 5353");
    let ip = common::frames::parse_ipv4(&f).unwrap();
    assert_eq!(ip.dst, SLIRP_GUEST);
    assert_eq!(&ip.l4[8..], b"datagram for the guest");
    assert!(common::frames::l4_csum_ok(&ip));
}
