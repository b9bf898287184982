//! Finishing frames a packet socket hands over with offloads still pending.
//!
//! Frames that the host stack or a NIC's GRO produced can reach an AF_PACKET
//! socket as TCP "super-frames" (up to 64 KiB, one header for many segments) and
//! with the TCP/UDP checksum left for hardware to fill in. A guest NIC without
//! offloads needs real wire frames, so with `PACKET_VNET_HDR` we learn what is
//! pending from the virtio-net header and do it in software: complete the
//! checksum, and cut super-frames into MSS-sized segments.

use crate::checksum;
pub(crate) use crate::vnet::{VnetHdr, VNET_HDR_LEN};
use crate::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use crate::wire::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Why a received frame could not be turned into wire frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OffloadError {
    /// Headers do not match what the offload header claims.
    #[error("malformed offloaded frame: {0}")]
    Malformed(&'static str),
    /// A segmentation type we do not implement (UFO, IPv6 extension headers).
    #[error("unsupported offload (gso type {0})")]
    Unsupported(u8),
}

/// Turns one received frame and its offload header into finished wire frames,
/// calling `emit` for each (one frame, or one per segment).
pub(crate) fn finish(
    hdr: &VnetHdr,
    mut frame: Vec<u8>,
    mut emit: impl FnMut(Vec<u8>),
) -> Result<(), OffloadError> {
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                fill_partial_csum(hdr, &mut frame)?;
            }
            emit(frame);
            Ok(())
        }
        t @ (GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4) => segment(t, hdr.gso_size, &frame, emit),
        other => Err(OffloadError::Unsupported(other)),
    }
}

/// Completes a checksum left partial: the field holds the pseudo-header sum; the
/// one's complement sum from `csum_start` to the end goes into the field.
fn fill_partial_csum(hdr: &VnetHdr, frame: &mut [u8]) -> Result<(), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > frame.len() {
        return Err(OffloadError::Malformed("checksum field beyond frame"));
    }
    let mut c = checksum::finish(checksum::add(0, &frame[start..]));
    // A UDP checksum that computes to zero is sent as all ones (zero means none).
    if hdr.csum_offset == 6 && c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Where the IP and transport headers of a frame are.
struct Layout {
    v4: bool,
    l3: usize,
    l4: usize,
    payload: usize,
}

fn layout(gso: u8, frame: &[u8]) -> Result<Layout, OffloadError> {
    let bad = OffloadError::Malformed;
    let (ty, l3) = wire::l3(frame).ok_or(bad("short ethernet header"))?;
    let want_proto = if gso == GSO_UDP_L4 {
        IPPROTO_UDP
    } else {
        IPPROTO_TCP
    };
    let (v4, l4) = match ty {
        ETHERTYPE_IPV4 if gso != GSO_TCPV6 => {
            let vihl = *frame.get(l3).ok_or(bad("short IPv4 header"))?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || frame.len() < l3 + ihl {
                return Err(bad("bad IPv4 header"));
            }
            if frame[l3 + 9] != want_proto {
                return Err(bad("IPv4 protocol does not match offload type"));
            }
            (true, l3 + ihl)
        }
        ETHERTYPE_IPV6 if gso != GSO_TCPV4 => {
            if frame.len() < l3 + 40 {
                return Err(bad("short IPv6 header"));
            }
            if frame[l3 + 6] != want_proto {
                // Extension headers before TCP/UDP: rare, not handled.
                return Err(OffloadError::Unsupported(gso));
            }
            (false, l3 + 40)
        }
        _ => return Err(bad("offload type does not match the EtherType")),
    };
    let l4_len = if want_proto == IPPROTO_TCP {
        let off = *frame.get(l4 + 12).ok_or(bad("short TCP header"))?;
        usize::from(off >> 4) * 4
    } else {
        8
    };
    if l4_len < 8 || frame.len() < l4 + l4_len {
        return Err(bad("bad transport header"));
    }
    Ok(Layout {
        v4,
        l3,
        l4,
        payload: l4 + l4_len,
    })
}

/// Cuts a TCP (or UDP GSO) super-frame into `mss`-sized segments.
fn segment(
    gso: u8,
    mss: u16,
    frame: &[u8],
    mut emit: impl FnMut(Vec<u8>),
) -> Result<(), OffloadError> {
    if mss == 0 {
        return Err(OffloadError::Malformed("zero segment size"));
    }
    let lay = layout(gso, frame)?;
    let tcp = gso != GSO_UDP_L4;
    let headers = &frame[..lay.payload];
    let data = &frame[lay.payload..];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(usize::from(mss)).collect()
    };
    let seq0 = u32::from_be_bytes(headers[lay.l4 + 4..lay.l4 + 8].try_into().unwrap_or([0; 4]));
    let id0 = if lay.v4 {
        u16::from_be_bytes([headers[lay.l3 + 4], headers[lay.l3 + 5]])
    } else {
        0
    };
    let n = chunks.len();
    let mut offset = 0u32;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut seg = Vec::with_capacity(headers.len() + chunk.len());
        seg.extend_from_slice(headers);
        seg.extend_from_slice(chunk);
        let l4_total = seg.len() - lay.l4;
        if lay.v4 {
            let ip_len = (seg.len() - lay.l3) as u16;
            seg[lay.l3 + 2..lay.l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
            let id = id0.wrapping_add(i as u16);
            seg[lay.l3 + 4..lay.l3 + 6].copy_from_slice(&id.to_be_bytes());
            seg[lay.l3 + 10..lay.l3 + 12].fill(0);
            let c = checksum::finish(checksum::add(0, &seg[lay.l3..lay.l4]));
            seg[lay.l3 + 10..lay.l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let pl = l4_total as u16;
            seg[lay.l3 + 4..lay.l3 + 6].copy_from_slice(&pl.to_be_bytes());
        }
        let csum_at = if tcp {
            let seq = seq0.wrapping_add(offset);
            seg[lay.l4 + 4..lay.l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let flags = &mut seg[lay.l4 + 13];
            if i + 1 < n {
                *flags &= !(0x01 | 0x08); // FIN and PSH only on the last segment
            }
            if i > 0 {
                *flags &= !0x80; // CWR only on the first
            }
            lay.l4 + 16
        } else {
            let ul = l4_total as u16;
            seg[lay.l4 + 4..lay.l4 + 6].copy_from_slice(&ul.to_be_bytes());
            lay.l4 + 6
        };
        seg[csum_at..csum_at + 2].fill(0);
        let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        let pseudo = if lay.v4 {
            checksum::pseudo_v4(
                &seg[lay.l3 + 12..lay.l3 + 16],
                &seg[lay.l3 + 16..lay.l3 + 20],
                proto,
                l4_total,
            )
        } else {
            checksum::pseudo_v6(
                &seg[lay.l3 + 8..lay.l3 + 24],
                &seg[lay.l3 + 24..lay.l3 + 40],
                proto,
                l4_total,
            )
        };
        let mut c = checksum::finish(checksum::add(pseudo, &seg[lay.l4..]));
        if !tcp && c == 0 {
            c = 0xffff;
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        offset = offset.wrapping_add(chunk.len() as u32);
        emit(seg);
    }
    Ok(())
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
