//! The virtio-net header (`struct virtio_net_hdr`) that rides in front of a frame
//! when offloads are in play, and the checks a guest's header must pass before a
//! backend passes it to the host kernel.
//!
//! The guest writes the header little-endian (virtio 1.x); the TAP and packet
//! socket read and write it in the host's byte order unless told otherwise. The
//! daemon runs on x86-64 only, where both are little-endian, so one encoding
//! serves every path.
//!
//! A guest that negotiated checksum offload may leave a TCP/UDP checksum for the
//! host to finish (`F_NEEDS_CSUM`, `csum_start`, `csum_offset`); one that
//! negotiated TSO may send a TCP super-frame of up to 64 KiB with one header and
//! ask the host to cut it into `gso_size`-byte segments. [`VnetHdr::check_tx`]
//! refuses every header a well-behaved driver would not produce for the
//! negotiated [`Offloads`], so a hostile header is dropped and counted here
//! rather than trusted (the kernel validates again).

use crate::wire::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::{MAX_FRAME_LEN, MIN_FRAME_LEN};

/// Size of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Size of `struct virtio_net_hdr_v1` (virtio 1.x: with `num_buffers`).
pub const VNET_HDR_V1_LEN: usize = 12;
/// The longest TSO super-frame accepted: an IPv6 packet of 40 header bytes and
/// a 65535-byte payload behind an Ethernet header with one VLAN tag (an IPv4
/// one is shorter). Linux guests stay below 64 KiB (`GSO_MAX_SIZE`).
pub const MAX_GSO_FRAME_LEN: usize = 18 + 40 + 65535;

/// `flags`: the checksum from `csum_start` to the end is left to the host.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified (device to driver only).
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation (UFO), never offered.
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO), never offered.
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP super-frame carries ECN (CWR on the first segment only).
pub const GSO_ECN: u8 = 0x80;

const IPPROTO_TCP: u8 = 6;

/// Guest-to-host offloads: what a backend can take with a header, or what a
/// device negotiated with its driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Partial checksums (`F_NEEDS_CSUM`).
    pub csum: bool,
    /// TCP/IPv4 segmentation.
    pub tso4: bool,
    /// TCP/IPv6 segmentation.
    pub tso6: bool,
    /// Super-frames with ECN (`GSO_ECN`).
    pub tso_ecn: bool,
}

impl Offloads {
    /// No offload: every frame is finished by the guest.
    pub const NONE: Offloads = Offloads {
        csum: false,
        tso4: false,
        tso6: false,
        tso_ecn: false,
    };
    /// Everything a TAP with a virtio-net header takes.
    pub const ALL: Offloads = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
        tso_ecn: true,
    };

    /// True when any offload is on.
    pub fn any(&self) -> bool {
        self.csum || self.tso4 || self.tso6 || self.tso_ecn
    }

    /// True when super-frames may arrive.
    pub fn tso(&self) -> bool {
        self.tso4 || self.tso6
    }

    /// The set made consistent the way virtio requires: segmentation needs
    /// checksum offload, ECN needs segmentation.
    pub fn normalized(self) -> Offloads {
        let csum = self.csum;
        let tso4 = csum && self.tso4;
        let tso6 = csum && self.tso6;
        Offloads {
            csum,
            tso4,
            tso6,
            tso_ecn: (tso4 || tso6) && self.tso_ecn,
        }
    }

    /// Both sets at once.
    pub fn intersect(self, other: Offloads) -> Offloads {
        Offloads {
            csum: self.csum && other.csum,
            tso4: self.tso4 && other.tso4,
            tso6: self.tso6 && other.tso6,
            tso_ecn: self.tso_ecn && other.tso_ecn,
        }
    }

    /// The longest frame a header with these offloads may carry.
    pub fn max_frame_len(&self) -> usize {
        if self.tso() {
            MAX_GSO_FRAME_LEN
        } else {
            MAX_FRAME_LEN
        }
    }
}

/// The fields of a `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Bytes of Ethernet, IP and transport headers (a hint).
    pub hdr_len: u16,
    /// Segment payload size (MSS) of a super-frame.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

/// Why a guest's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// Flag bits other than `F_NEEDS_CSUM`.
    #[error("unknown or device-only header flags {0:#04x}")]
    Flags(u8),
    /// An offload the driver did not negotiate.
    #[error("offload not negotiated: {0}")]
    NotNegotiated(&'static str),
    /// A segmentation type never offered (UFO, USO, unknown).
    #[error("unsupported gso type {0:#04x}")]
    GsoType(u8),
    /// A frame too short or too long for its header.
    #[error("frame of {0} bytes out of range for its header")]
    Length(usize),
    /// Header fields that do not fit the frame.
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

impl VnetHdr {
    /// Reads a header from its first [`VNET_HDR_LEN`] bytes (little-endian).
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// The header as [`VNET_HDR_LEN`] little-endian bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// True when the header asks for nothing: a finished wire frame.
    pub fn is_plain(&self) -> bool {
        self.flags == 0 && self.gso_type == GSO_NONE
    }

    /// Checks a header a guest sent with `frame` against the offloads it
    /// negotiated (`allowed`), including the frame's length: at most
    /// [`MAX_FRAME_LEN`] bytes unless it is a super-frame, then at most
    /// [`MAX_GSO_FRAME_LEN`].
    pub fn check_tx(&self, frame: &[u8], allowed: Offloads) -> Result<(), VnetError> {
        let len = frame.len();
        if self.flags & !F_NEEDS_CSUM != 0 {
            return Err(VnetError::Flags(self.flags));
        }
        let needs_csum = self.flags & F_NEEDS_CSUM != 0;
        if needs_csum && !allowed.csum {
            return Err(VnetError::NotNegotiated("checksum"));
        }
        let gso = self.gso_type & !GSO_ECN;
        let max = if gso == GSO_NONE {
            MAX_FRAME_LEN
        } else {
            MAX_GSO_FRAME_LEN
        };
        if !(MIN_FRAME_LEN..=max).contains(&len) {
            return Err(VnetError::Length(len));
        }
        if needs_csum {
            let start = usize::from(self.csum_start);
            let field_end = start + usize::from(self.csum_offset) + 2;
            if start < MIN_FRAME_LEN || field_end > len {
                return Err(VnetError::Malformed("checksum field outside the frame"));
            }
        }
        if usize::from(self.hdr_len) > len {
            return Err(VnetError::Malformed("hdr_len beyond the frame"));
        }
        match gso {
            GSO_NONE if self.gso_type & GSO_ECN != 0 => {
                Err(VnetError::Malformed("ECN without segmentation"))
            }
            GSO_NONE => Ok(()),
            GSO_TCPV4 | GSO_TCPV6 => self.check_tso(gso, frame, allowed),
            other => Err(VnetError::GsoType(other)),
        }
    }

    fn check_tso(&self, gso: u8, frame: &[u8], allowed: Offloads) -> Result<(), VnetError> {
        let v4 = gso == GSO_TCPV4;
        if (v4 && !allowed.tso4) || (!v4 && !allowed.tso6) {
            return Err(VnetError::NotNegotiated("TCP segmentation"));
        }
        if self.gso_type & GSO_ECN != 0 && !allowed.tso_ecn {
            return Err(VnetError::NotNegotiated("segmentation with ECN"));
        }
        if self.flags & F_NEEDS_CSUM == 0 {
            return Err(VnetError::Malformed("segmentation without F_NEEDS_CSUM"));
        }
        if self.gso_size == 0 {
            return Err(VnetError::Malformed("zero gso_size"));
        }
        let bad = VnetError::Malformed("segmentation type does not match the packet");
        let (ty, l3) = wire::l3(frame).ok_or(bad)?;
        if v4 {
            let vihl = *frame.get(l3).ok_or(bad)?;
            let proto = *frame.get(l3 + 9).ok_or(bad)?;
            if ty != ETHERTYPE_IPV4 || vihl >> 4 != 4 || vihl & 0x0f < 5 || proto != IPPROTO_TCP {
                return Err(bad);
            }
        } else if ty != ETHERTYPE_IPV6 || frame.get(l3).map(|b| b >> 4) != Some(6) {
            return Err(bad);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "vnet_tests.rs"]
mod tests;

/// Writes `head` (a virtio-net header) and `frame` to `fd` in one
/// `writev(2)`, as TAP devices with `IFF_VNET_HDR` and packet sockets with
/// `PACKET_VNET_HDR` expect them; the caller counts and classifies errors.
pub(crate) fn write_with_header(
    fd: std::os::fd::RawFd,
    head: &[u8],
    frame: &[u8],
) -> std::io::Result<()> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr().cast_mut().cast(),
            iov_len: frame.len(),
        },
    ];
    // SAFETY: writev(2) only reads the two live buffers the iovecs describe.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
