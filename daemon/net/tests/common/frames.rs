//! Hand-built Ethernet/ARP/IPv4/ICMP/UDP/TCP/DHCP frames and their parsers.

use std::net::Ipv4Addr;

/// Internet checksum of `data` with an initial sum.
pub fn csum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 pseudo-header sum (unfolded) for a transport checksum.
pub fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    [
        s[0..2].to_vec(),
        s[2..4].to_vec(),
        d[0..2].to_vec(),
        d[2..4].to_vec(),
    ]
    .iter()
    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
    .sum::<u32>()
        + u32::from(proto)
        + len as u32
}

/// Ethernet header.
pub fn eth(dst: [u8; 6], src: [u8; 6], ty: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ty.to_be_bytes());
    f
}

/// An ARP request "who has `target`, tell `ip`" broadcast from `mac`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = eth([0xff; 6], mac, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The sender MAC of an ARP reply from `ip`, if `f` is one.
pub fn arp_reply_from(f: &[u8], ip: Ipv4Addr) -> Option<[u8; 6]> {
    (f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2] && f[28..32] == ip.octets())
        .then(|| f[22..28].try_into().unwrap())
}

/// An IPv4 packet (header checksum filled) in an Ethernet frame.
pub fn ipv4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum(0, &h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

/// An ICMP echo request.
pub fn icmp_echo(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(data);
    let c = csum(0, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(dst_mac, src_mac, src, dst, 1, &icmp)
}

/// A parsed IPv4 packet view of a frame.
pub struct Ip<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol number.
    pub proto: u8,
    /// The transport header and payload.
    pub l4: &'a [u8],
    /// Whether the IPv4 header checksum verifies.
    pub hdr_ok: bool,
}

/// Parses an IPv4 frame (no VLAN).
pub fn parse_ipv4(f: &[u8]) -> Option<Ip<'_>> {
    if f.len() < 34 || f[12..14] != [8, 0] || f[14] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[14] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    if f.len() < 14 + total || total < ihl {
        return None;
    }
    Some(Ip {
        src: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        dst: Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        proto: f[23],
        l4: &f[14 + ihl..14 + total],
        hdr_ok: csum(0, &f[14..14 + ihl]) == 0,
    })
}

/// True when the TCP/UDP checksum of the packet verifies (UDP 0 = none).
pub fn l4_csum_ok(ip: &Ip<'_>) -> bool {
    if ip.proto == 17 && ip.l4.len() >= 8 && ip.l4[6..8] == [0, 0] {
        return true;
    }
    csum(pseudo(ip.src, ip.dst, ip.proto, ip.l4.len()), ip.l4) == 0
}

/// A UDP datagram (checksum filled).
pub fn udp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = src.1.to_be_bytes().to_vec();
    u.extend_from_slice(&dst.1.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = csum(pseudo(src.0, dst.0, 17, len), &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4(dst_mac, src_mac, src.0, dst.0, 17, &u)
}

/// A DHCPDISCOVER from `mac` with transaction id `xid`.
pub fn dhcp_discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[4..8].copy_from_slice(&xid.to_be_bytes());
    b[28..34].copy_from_slice(&mac);
    b.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    b.extend_from_slice(&[53, 1, 1]); // DHCPDISCOVER
    b.extend_from_slice(&[55, 3, 1, 3, 6]); // ask for mask, router, DNS
    b.push(255);
    udp(
        [0xff; 6],
        mac,
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 67),
        &b,
    )
}

/// A DHCP reply: its `yiaddr` and options (code -> value).
pub struct DhcpReply {
    /// Transaction id.
    pub xid: u32,
    /// The address offered.
    pub yiaddr: Ipv4Addr,
    /// Options in order.
    pub options: Vec<(u8, Vec<u8>)>,
}

impl DhcpReply {
    /// The value of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parses a BOOTREPLY from server port 67 to client port 68.
pub fn parse_dhcp_reply(f: &[u8]) -> Option<DhcpReply> {
    let ip = parse_ipv4(f)?;
    if ip.proto != 17 || ip.l4.len() < 8 + 240 || ip.l4[0..4] != [0, 67, 0, 68] {
        return None;
    }
    let b = &ip.l4[8..];
    if b[0] != 2 || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let mut options = Vec::new();
    let mut i = 240;
    while i < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*b.get(i + 1)?);
        options.push((b[i], b.get(i + 2..i + 2 + len)?.to_vec()));
        i += 2 + len;
    }
    Some(DhcpReply {
        xid: u32::from_be_bytes(b[4..8].try_into().unwrap()),
        yiaddr: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        options,
    })
}
