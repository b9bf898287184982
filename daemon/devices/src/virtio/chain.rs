//! Strict validation of descriptor chains the guest hands us.
//!
//! `virtio-queue` walks the chain (bounding it by the queue size, so loops end,
//! and handling indirect tables); this module turns the walk into two lists of
//! guest-memory segments and rejects everything a well-behaved driver never
//! produces: a chain cut short (a `NEXT` link to an index past the table, a loop,
//! an unreadable descriptor, a bad indirect table), a zero-length descriptor, a
//! buffer outside guest RAM, a device-readable buffer after a device-writable one.
//! Data then moves through [`gather`]/[`scatter`], which stay inside the segments.

use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

/// Chains longer than this are refused whatever the queue size.
pub const MAX_CHAIN_DESCRIPTORS: usize = 1024;

/// One validated buffer in guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical start.
    pub addr: GuestAddress,
    /// Length in bytes (never zero).
    pub len: u32,
}

/// A validated chain: device-readable segments, then device-writable ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// Buffers the device reads (driver to device).
    pub readable: Vec<Segment>,
    /// Buffers the device writes (device to driver).
    pub writable: Vec<Segment>,
}

/// Why a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain has no descriptor at all.
    #[error("empty descriptor chain")]
    Empty,
    /// The walk stopped on a descriptor that still had `NEXT` set.
    #[error("descriptor chain cut short (bad next index, loop or bad indirect table)")]
    Truncated,
    /// A descriptor of length zero.
    #[error("zero-length descriptor")]
    ZeroLength,
    /// A buffer outside guest memory.
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// Start of the buffer.
        addr: u64,
        /// Length of the buffer.
        len: u32,
    },
    /// A device-readable buffer after a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    Order,
    /// More than [`MAX_CHAIN_DESCRIPTORS`] descriptors.
    #[error("descriptor chain longer than {MAX_CHAIN_DESCRIPTORS}")]
    TooLong,
}

/// Walks and validates `chain` against `mem`.
pub fn parse<M>(chain: DescriptorChain<M>, mem: &GuestMemoryMmap) -> Result<Chain, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let mut out = Chain::default();
    let mut count = 0usize;
    let mut last_has_next = false;
    for desc in chain {
        count += 1;
        if count > MAX_CHAIN_DESCRIPTORS {
            return Err(ChainError::TooLong);
        }
        last_has_next = desc.has_next();
        let seg = Segment {
            addr: desc.addr(),
            len: desc.len(),
        };
        if seg.len == 0 {
            return Err(ChainError::ZeroLength);
        }
        if !mem.check_range(seg.addr, seg.len as usize) {
            return Err(ChainError::OutOfRange {
                addr: seg.addr.0,
                len: seg.len,
            });
        }
        if desc.is_write_only() {
            out.writable.push(seg);
        } else if out.writable.is_empty() {
            out.readable.push(seg);
        } else {
            return Err(ChainError::Order);
        }
    }
    if count == 0 {
        return Err(ChainError::Empty);
    }
    if last_has_next {
        return Err(ChainError::Truncated);
    }
    Ok(out)
}

/// Total bytes in `segs`.
pub fn total_len(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Calls `f(addr, range)` for the pieces of `segs` covering bytes
/// `[offset, offset + len)` of their concatenation; `range` indexes the caller's
/// buffer. Returns false if the segments are shorter than requested.
fn walk(
    segs: &[Segment],
    offset: u64,
    len: usize,
    mut f: impl FnMut(GuestAddress, std::ops::Range<usize>) -> bool,
) -> bool {
    let mut skip = offset;
    let mut done = 0usize;
    for s in segs {
        if done == len {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let n = ((seg_len - skip) as usize).min(len - done);
        if !f(GuestAddress(s.addr.0 + skip), done..done + n) {
            return false;
        }
        done += n;
        skip = 0;
    }
    done == len
}

/// Copies `out.len()` bytes starting `offset` bytes into `segs` out of guest memory.
pub fn gather(mem: &GuestMemoryMmap, segs: &[Segment], offset: u64, out: &mut [u8]) -> bool {
    let len = out.len();
    walk(segs, offset, len, |addr, r| {
        mem.read_slice(&mut out[r], addr).is_ok()
    })
}

/// Copies `data` into guest memory starting `offset` bytes into `segs`.
pub fn scatter(mem: &GuestMemoryMmap, segs: &[Segment], offset: u64, data: &[u8]) -> bool {
    walk(segs, offset, data.len(), |addr, r| {
        mem.write_slice(&data[r], addr).is_ok()
    })
}
