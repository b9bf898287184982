//! A tiny TCP peer playing the guest: answers one connection's handshake,
//! acknowledges data in order and collects the byte stream until FIN.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use colinux_net::NetBackend;

use super::frames::{csum, ipv4, l4_csum_ok, parse_ipv4};

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// One parsed TCP segment.
#[derive(Debug, Clone)]
pub struct Seg {
    /// Source MAC of the frame.
    pub src_mac: [u8; 6],
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
    /// Payload.
    pub payload: Vec<u8>,
    /// IPv4 and TCP checksums both verify.
    pub csum_ok: bool,
}

/// Parses a TCP/IPv4 frame.
pub fn parse_tcp(f: &[u8]) -> Option<Seg> {
    let ip = parse_ipv4(f)?;
    if ip.proto != 6 || ip.l4.len() < 20 {
        return None;
    }
    let t = ip.l4;
    let off = usize::from(t[12] >> 4) * 4;
    if off < 20 || off > t.len() {
        return None;
    }
    Some(Seg {
        src_mac: f[6..12].try_into().unwrap(),
        src: (ip.src, u16::from_be_bytes([t[0], t[1]])),
        dst: (ip.dst, u16::from_be_bytes([t[2], t[3]])),
        seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
        ack: u32::from_be_bytes(t[8..12].try_into().unwrap()),
        flags: t[13],
        payload: t[off..].to_vec(),
        csum_ok: ip.hdr_ok && l4_csum_ok(&ip),
    })
}

/// Builds a TCP segment (with an MSS option on SYN) in an IPv4 frame.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let opts: &[u8] = if flags & SYN != 0 {
        &[2, 4, 0x05, 0xb4]
    } else {
        &[]
    };
    let hlen = 20 + opts.len();
    let mut t = src.1.to_be_bytes().to_vec();
    t.extend_from_slice(&dst.1.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[((hlen / 4) as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(opts);
    t.extend_from_slice(payload);
    let s = src.0.octets();
    let d = dst.0.octets();
    let mut sum = 6u32 + t.len() as u32;
    for w in [&s[0..2], &s[2..4], &d[0..2], &d[2..4]] {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    let c = csum(sum, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(dst_mac, src_mac, src.0, dst.0, 6, &t)
}

/// What [`accept_stream`] saw.
#[derive(Debug, Default)]
pub struct StreamReport {
    /// The in-order byte stream up to FIN.
    pub data: Vec<u8>,
    /// Frames of this connection received.
    pub frames: usize,
    /// Frames whose IPv4 or TCP checksum did not verify.
    pub bad_csum: usize,
    /// The longest frame seen.
    pub max_frame: usize,
    /// Whether the peer's FIN arrived.
    pub fin: bool,
}

/// Accepts one TCP connection to `me` on `backend` and collects its stream.
pub fn accept_stream(
    backend: &mut dyn NetBackend,
    my_mac: [u8; 6],
    me: (Ipv4Addr, u16),
    timeout: Duration,
) -> StreamReport {
    let deadline = Instant::now() + timeout;
    let mut rep = StreamReport::default();
    let iss = 0x1000_0000u32;
    let mut expected: Option<u32> = None;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline && !rep.fin {
        let mut got = false;
        while let Some(n) = backend.recv(&mut buf).expect("recv") {
            got = true;
            let f = &buf[..n];
            let Some(s) = parse_tcp(f) else { continue };
            if s.dst != me {
                continue;
            }
            rep.frames += 1;
            rep.max_frame = rep.max_frame.max(n);
            if !s.csum_ok {
                rep.bad_csum += 1;
                continue;
            }
            let reply = |seq: u32, ack: u32, flags: u8| {
                tcp_frame(s.src_mac, my_mac, me, s.src, seq, ack, flags, &[])
            };
            if s.flags & SYN != 0 {
                expected = Some(s.seq.wrapping_add(1));
                backend
                    .send(&reply(iss, s.seq.wrapping_add(1), SYN | ACK))
                    .unwrap();
                continue;
            }
            let Some(exp) = expected else { continue };
            let mut next = exp;
            if s.seq == exp && !s.payload.is_empty() {
                rep.data.extend_from_slice(&s.payload);
                next = exp.wrapping_add(s.payload.len() as u32);
            }
            if s.flags & FIN != 0 && s.seq.wrapping_add(s.payload.len() as u32) == next {
                next = next.wrapping_add(1);
                rep.fin = true;
            }
            expected = Some(next);
            if !s.payload.is_empty() || s.flags & FIN != 0 {
                let flags = if rep.fin { ACK | FIN } else { ACK };
                backend
                    .send(&reply(iss.wrapping_add(1), next, flags))
                    .unwrap();
            }
        }
        if !got {
            let mut p = libc::pollfd {
                fd: backend.ready_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 50) };
        }
    }
    rep
}
