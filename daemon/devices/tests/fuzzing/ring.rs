//! Guest-side checks of what a device returned in a used ring, from a
//! snapshot of the driver's rings taken when it rang the doorbell.

use crate::common::{DriverQueue, DESC_NEXT, DESC_WRITE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{overlaps, HIGH, LOW, RINGS_END};

const DESC_F_INDIRECT: u16 = 4;
/// Most entries of one indirect table the checks look at.
const MAX_SCAN: u64 = 4096;

#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn desc(mem: &GuestMemoryMmap, table: u64, i: u64) -> Option<Desc> {
    let at = table.checked_add(16 * i)?;
    let mut d = [0u8; 16];
    mem.read_slice(&mut d, GuestAddress(at)).ok()?;
    parse_desc(&d)
}

fn parse_desc(d: &[u8]) -> Option<Desc> {
    Some(Desc {
        addr: u64::from_le_bytes(d[0..8].try_into().ok()?),
        len: u32::from_le_bytes(d[8..12].try_into().ok()?),
        flags: u16::from_le_bytes(d[12..14].try_into().ok()?),
        next: u16::from_le_bytes(d[14..16].try_into().ok()?),
    })
}

/// The writable buffers of the indirect table of `n` entries at `addr`,
/// reading each RAM region's part of the table at once (entry by entry
/// through `read_slice` this scan cost three quarters of the fuzzers' time);
/// an entry not wholly inside one region is skipped, as `desc` would.
fn indirect_writable(mem: &GuestMemoryMmap, addr: u64, n: u64, out: &mut Vec<(u64, u64)>) {
    let end = addr.saturating_add(16 * n);
    for (base, len) in [LOW, HIGH] {
        let (lo, hi) = (addr.max(base), end.min(base + len as u64));
        let (first, last) = (
            (lo.saturating_sub(addr)).div_ceil(16),
            hi.saturating_sub(addr) / 16,
        );
        if lo >= hi || first >= last {
            continue;
        }
        let mut buf = vec![0u8; ((last - first) * 16) as usize];
        if mem
            .read_slice(&mut buf, GuestAddress(addr + first * 16))
            .is_err()
        {
            continue;
        }
        out.extend(
            buf.chunks_exact(16)
                .filter_map(parse_desc)
                .filter(|e| e.flags & DESC_WRITE != 0)
                .map(|e| (e.addr, u64::from(e.len))),
        );
    }
}

/// What the driver offered at the doorbell.
pub struct Offer {
    /// Every head in the available ring (any slot the device may read).
    pub heads: Vec<u16>,
    /// No device-writable buffer overlaps ring memory or an indirect table,
    /// so the device cannot have changed the rings or chains it walked.
    pub clean: bool,
}

/// Snapshots `q`'s rings before a doorbell.
pub fn offer(mem: &GuestMemoryMmap, q: &DriverQueue) -> Offer {
    let heads = (0..u64::from(q.size))
        .map(|s| {
            mem.read_obj::<u16>(GuestAddress(q.avail + 4 + 2 * s))
                .unwrap_or(0xffff)
        })
        .collect();
    let mut writable = Vec::new();
    let mut meta = vec![(0x1000u64, RINGS_END - 0x1000)];
    let mut clean = true;
    for i in 0..u64::from(q.size) {
        let Some(d) = desc(mem, q.desc, i) else {
            continue;
        };
        if d.flags & DESC_F_INDIRECT != 0 {
            meta.push((d.addr, u64::from(d.len)));
            let n = u64::from(d.len) / 16;
            if n > MAX_SCAN {
                clean = false;
                continue;
            }
            indirect_writable(mem, d.addr, n, &mut writable);
        } else if d.flags & DESC_WRITE != 0 {
            writable.push((d.addr, u64::from(d.len)));
        }
    }
    clean &= !writable
        .iter()
        .any(|&(a, l)| meta.iter().any(|&(b, m)| overlaps(a, l, b, m)));
    Offer { heads, clean }
}

/// The most bytes a device may write into the chain at `head`: every
/// device-writable byte along the walk (an upper bound of what a strict
/// parser accepts).
pub fn writable_bound(mem: &GuestMemoryMmap, q: &DriverQueue, head: u16) -> u64 {
    let (mut table, mut size, mut i) = (q.desc, u64::from(q.size), u64::from(head));
    let mut ttl = size;
    let mut indirect = false;
    let mut total = 0u64;
    while ttl > 0 && i < size {
        let Some(d) = desc(mem, table, i) else { break };
        if d.flags & DESC_F_INDIRECT != 0 {
            if indirect || d.len == 0 || !d.len.is_multiple_of(16) {
                break;
            }
            indirect = true;
            table = d.addr;
            size = u64::from(d.len) / 16;
            ttl = size;
            i = 0;
            continue;
        }
        if d.flags & DESC_WRITE != 0 {
            total += u64::from(d.len);
        }
        if d.flags & DESC_NEXT == 0 {
            break;
        }
        i = u64::from(d.next);
        ttl -= 1;
    }
    total
}

/// Takes every new used entry of `q` after a doorbell and checks it against
/// `offer`: only heads of the queue the driver offered, at most one ring's
/// worth, and (when `max_len` is given and the rings were not overwritable)
/// no more bytes than the chain can hold and `max_len` allows.
pub fn take_used(
    mem: &GuestMemoryMmap,
    q: &mut DriverQueue,
    offer: &Offer,
    max_len: Option<u64>,
) -> Vec<(u32, u32)> {
    let cap = usize::from(q.size) + 1;
    let used: Vec<(u32, u32)> = std::iter::from_fn(|| q.pop_used(mem)).take(cap).collect();
    assert!(
        used.len() <= usize::from(q.size),
        "queue {}: more used entries than the ring holds",
        q.index
    );
    for &(id, len) in &used {
        // A guest that gave the device a writable buffer over its own rings
        // may find anything there: only a clean offer's entries are checked.
        if offer.clean {
            assert!(
                id < u32::from(q.size),
                "queue {}: used id {id} outside a ring of {}",
                q.index,
                q.size
            );
            assert!(
                offer.heads.contains(&(id as u16)),
                "queue {}: used id {id} was never offered (avail ring {:?})",
                q.index,
                offer.heads
            );
            if let Some(max) = max_len {
                let bound = writable_bound(mem, q, id as u16).min(max);
                assert!(
                    u64::from(len) <= bound,
                    "queue {}: used length {len} of head {id} exceeds the chain's {bound} writable bytes",
                    q.index
                );
            }
        }
    }
    used
}
