//! The guest side of a split virtqueue, laid out in guest RAM the way
//! Linux's `virtio_ring` does it: descriptor table, available ring (with
//! `used_event`), used ring (with `avail_event`), a free list of
//! descriptors, and Linux's notification rules (`virtqueue_kick_prepare`,
//! `vring_need_event`).
//!
//! Tests drive the project's real devices with it: the scripted guest of
//! `colinux-sim` (through real exits) and the device crate's own integration
//! tests (through the buses directly). One driver, so the two cannot drift.

#![forbid(unsafe_code)]

use virtio_bindings::virtio_ring as vr;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// What the guest-side driver could not do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// A ring or descriptor address is outside guest RAM.
    #[error("virtqueue: cannot access {0} in guest RAM")]
    Memory(&'static str),
    /// The allocator's range is used up.
    #[error("guest allocator: {size:#x} bytes do not fit below {end:#x}")]
    NoRoom {
        /// Bytes asked for.
        size: u64,
        /// End of the allocator's range.
        end: u64,
    },
    /// The device returned a head the driver had not made available.
    #[error("queue {queue}: device returned id {id}, which is not in flight")]
    NotInFlight {
        /// Queue index.
        queue: u16,
        /// The id the device returned.
        id: u32,
    },
}

/// A bump allocator over a range of guest RAM the driver owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAlloc {
    next: u64,
    end: u64,
}

impl GuestAlloc {
    /// Hands out `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        GuestAlloc { next: start, end }
    }

    /// `size` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<u64, RingError> {
        let a = self.next.checked_add(align - 1).map(|x| x & !(align - 1));
        match a.and_then(|a| a.checked_add(size).map(|e| (a, e))) {
            Some((a, e)) if e <= self.end => {
                self.next = e;
                Ok(a)
            }
            _ => Err(RingError::NoRoom {
                size,
                end: self.end,
            }),
        }
    }

    /// Carves a sub-allocator of `size` bytes out of this one.
    pub fn split(&mut self, size: u64) -> Result<GuestAlloc, RingError> {
        let a = self.alloc(size, 4096)?;
        Ok(GuestAlloc::new(a, a + size))
    }
}

/// Descriptor flag: the chain continues at `next`.
pub const DESC_NEXT: u16 = vr::VRING_DESC_F_NEXT as u16;
/// Descriptor flag: the device writes this buffer.
pub const DESC_WRITE: u16 = vr::VRING_DESC_F_WRITE as u16;
/// Descriptor flag: the buffer is an indirect descriptor table.
pub const DESC_INDIRECT: u16 = vr::VRING_DESC_F_INDIRECT as u16;
/// Used ring flag: the device asks not to be notified.
const USED_F_NO_NOTIFY: u16 = vr::VRING_USED_F_NO_NOTIFY as u16;

/// One buffer of a chain: (guest address, length, device-writable).
pub type Buf = (u64, u32, bool);

fn mem_err(what: &'static str) -> RingError {
    RingError::Memory(what)
}

/// The ring format alone: where a queue's three parts lie and raw reads and
/// writes of their fields, with no bookkeeping. Hostile-guest tests write
/// any values through it; [`SplitQueue`] keeps a well-behaved driver's state
/// on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRing {
    /// Number of descriptors.
    pub size: u16,
    /// Guest address of the descriptor table.
    pub desc: u64,
    /// Guest address of the available ring.
    pub avail: u64,
    /// Guest address of the used ring.
    pub used: u64,
}

impl RawRing {
    /// Allocates a ring of `size` entries from `alloc` (each part on its own
    /// page, as Linux aligns them) and zeroes it.
    pub fn lay_out(
        mem: &GuestMemoryMmap,
        alloc: &mut GuestAlloc,
        size: u16,
    ) -> Result<Self, RingError> {
        let n = u64::from(size);
        let ring = RawRing {
            size,
            desc: alloc.alloc(16 * n, 4096)?,
            avail: alloc.alloc(6 + 2 * n, 4096)?,
            used: alloc.alloc(6 + 8 * n, 4096)?,
        };
        for (a, len) in [
            (ring.desc, 16 * n),
            (ring.avail, 6 + 2 * n),
            (ring.used, 6 + 8 * n),
        ] {
            mem.write_slice(&vec![0u8; len as usize], GuestAddress(a))
                .map_err(|_| mem_err("ring"))?;
        }
        Ok(ring)
    }

    /// Writes descriptor `i` (modulo the size) with any values.
    pub fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), RingError> {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        let at = self.desc + 16 * u64::from(i % self.size);
        mem.write_slice(&d, GuestAddress(at))
            .map_err(|_| mem_err("descriptor"))
    }

    /// Puts `head` in the available ring's slot for running index `n`.
    pub fn set_avail_entry(
        &self,
        mem: &GuestMemoryMmap,
        n: u16,
        head: u16,
    ) -> Result<(), RingError> {
        let slot = u64::from(n % self.size);
        mem.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot))
            .map_err(|_| mem_err("available ring"))
    }

    /// Writes the available ring's `idx` (what the device reads next).
    pub fn set_avail_idx(&self, mem: &GuestMemoryMmap, idx: u16) -> Result<(), RingError> {
        mem.write_obj(idx, GuestAddress(self.avail + 2))
            .map_err(|_| mem_err("available index"))
    }

    /// Writes the available ring's flags (`VRING_AVAIL_F_NO_INTERRUPT`).
    pub fn set_avail_flags(&self, mem: &GuestMemoryMmap, flags: u16) -> Result<(), RingError> {
        mem.write_obj(flags, GuestAddress(self.avail))
            .map_err(|_| mem_err("available flags"))
    }

    /// Writes `used_event` (read by a device that negotiated `EVENT_IDX`).
    pub fn set_used_event(&self, mem: &GuestMemoryMmap, v: u16) -> Result<(), RingError> {
        mem.write_obj(v, GuestAddress(self.avail + 4 + 2 * u64::from(self.size)))
            .map_err(|_| mem_err("used_event"))
    }

    /// The used ring's `idx` (how many elements the device has returned).
    pub fn used_idx(&self, mem: &GuestMemoryMmap) -> Result<u16, RingError> {
        mem.read_obj(GuestAddress(self.used + 2))
            .map_err(|_| mem_err("used index"))
    }

    /// The used ring's flags (`VRING_USED_F_NO_NOTIFY`).
    pub fn used_flags(&self, mem: &GuestMemoryMmap) -> Result<u16, RingError> {
        mem.read_obj(GuestAddress(self.used))
            .map_err(|_| mem_err("used flags"))
    }

    /// `avail_event` (written by a device that negotiated `EVENT_IDX`).
    pub fn avail_event(&self, mem: &GuestMemoryMmap) -> Result<u16, RingError> {
        mem.read_obj(GuestAddress(self.used + 4 + 8 * u64::from(self.size)))
            .map_err(|_| mem_err("avail_event"))
    }

    /// The used element for running index `n`: (head id, length written).
    pub fn used_elem(&self, mem: &GuestMemoryMmap, n: u16) -> Result<(u32, u32), RingError> {
        let at = self.used + 4 + 8 * u64::from(n % self.size);
        let id: u32 = mem
            .read_obj(GuestAddress(at))
            .map_err(|_| mem_err("used element"))?;
        let len: u32 = mem
            .read_obj(GuestAddress(at + 4))
            .map_err(|_| mem_err("used element"))?;
        Ok((id, len))
    }
}

/// A split virtqueue owned by the guest.
#[derive(Debug, Clone)]
pub struct SplitQueue {
    /// Queue index on its device.
    pub index: u16,
    /// Number of descriptors.
    pub size: u16,
    /// Guest address of the descriptor table.
    pub desc: u64,
    /// Guest address of the available ring.
    pub avail: u64,
    /// Guest address of the used ring.
    pub used: u64,
    /// Guest-physical address of this queue's doorbell.
    pub notify_addr: u64,
    /// MSI-X vector programmed for the queue.
    pub vector: u16,
    /// Whether `VIRTIO_F_EVENT_IDX` was negotiated.
    pub event_idx: bool,
    free: Vec<u16>,
    avail_idx: u16,
    kicked_idx: u16,
    last_used: u16,
    chains: Vec<Option<Vec<u16>>>,
}

impl SplitQueue {
    /// Lays out a queue of `size` entries in `alloc`'s memory.
    pub fn new(
        mem: &GuestMemoryMmap,
        alloc: &mut GuestAlloc,
        index: u16,
        size: u16,
        event_idx: bool,
    ) -> Result<Self, RingError> {
        let ring = RawRing::lay_out(mem, alloc, size)?;
        Ok(SplitQueue {
            index,
            size,
            desc: ring.desc,
            avail: ring.avail,
            used: ring.used,
            notify_addr: 0,
            vector: 0xffff,
            event_idx,
            free: (0..size).rev().collect(),
            avail_idx: 0,
            kicked_idx: 0,
            last_used: 0,
            chains: vec![None; usize::from(size)],
        })
    }

    /// The ring's format view (raw reads and writes).
    pub fn ring(&self) -> RawRing {
        RawRing {
            size: self.size,
            desc: self.desc,
            avail: self.avail,
            used: self.used,
        }
    }

    /// Number of free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains handed to the device and not yet used.
    pub fn in_flight(&self) -> usize {
        self.chains.iter().filter(|c| c.is_some()).count()
    }

    /// Puts `head` in the next available slot (not yet published).
    pub fn push_avail(&mut self, mem: &GuestMemoryMmap, head: u16) -> Result<(), RingError> {
        self.ring().set_avail_entry(mem, self.avail_idx, head)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    /// Adds a chain of `bufs` (device-readable first); returns its head, or
    /// `None` when not enough descriptors are free.
    pub fn add(&mut self, mem: &GuestMemoryMmap, bufs: &[Buf]) -> Result<Option<u16>, RingError> {
        if bufs.is_empty() || bufs.len() > self.free.len() {
            return Ok(None);
        }
        let ids: Vec<u16> = (0..bufs.len()).filter_map(|_| self.free.pop()).collect();
        for (k, (&(addr, len, writable), &id)) in bufs.iter().zip(&ids).enumerate() {
            let mut flags = if writable { DESC_WRITE } else { 0 };
            let next = ids.get(k + 1).copied().unwrap_or(0);
            if k + 1 < ids.len() {
                flags |= DESC_NEXT;
            }
            self.ring().write_desc(mem, id, addr, len, flags, next)?;
        }
        let head = ids[0];
        self.chains[usize::from(head)] = Some(ids);
        self.push_avail(mem, head)?;
        Ok(Some(head))
    }

    /// Publishes the new available index; true if the device wants a kick
    /// (Linux's `virtqueue_kick_prepare`).
    pub fn publish(&mut self, mem: &GuestMemoryMmap) -> Result<bool, RingError> {
        let ring = self.ring();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        ring.set_avail_idx(mem, self.avail_idx)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let old = self.kicked_idx;
        let new = self.avail_idx;
        self.kicked_idx = new;
        if new == old {
            return Ok(false);
        }
        if self.event_idx {
            Ok(need_event(ring.avail_event(mem)?, new, old))
        } else {
            Ok(ring.used_flags(mem)? & USED_F_NO_NOTIFY == 0)
        }
    }

    /// Takes the next used element: (head id, length written). Frees its
    /// descriptors; with `EVENT_IDX` asks for an interrupt at the next one.
    pub fn pop_used(&mut self, mem: &GuestMemoryMmap) -> Result<Option<(u32, u32)>, RingError> {
        let ring = self.ring();
        if ring.used_idx(mem)? == self.last_used {
            return Ok(None);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let (id, len) = ring.used_elem(mem, self.last_used)?;
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            ring.set_used_event(mem, self.last_used)?;
        }
        match self.chains.get_mut(id as usize).and_then(Option::take) {
            Some(ids) => self.free.extend(ids.into_iter().rev()),
            None => {
                return Err(RingError::NotInFlight {
                    queue: self.index,
                    id,
                })
            }
        }
        Ok(Some((id, len)))
    }

    /// Forgets a raw chain whose descriptors were written with
    /// [`RawRing::write_desc`] (through [`SplitQueue::ring`]): marks `ids` as in flight under `head`.
    pub fn adopt_raw(&mut self, head: u16, ids: &[u16]) {
        self.free.retain(|f| !ids.contains(f));
        if let Some(slot) = self.chains.get_mut(usize::from(head)) {
            *slot = Some(ids.to_vec());
        }
    }
}

/// `vring_need_event`: whether moving the index from `old` to `new` crossed `event`.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_aligns_and_refuses_overflow() {
        let mut a = GuestAlloc::new(0x1001, 0x4000);
        assert_eq!(a.alloc(16, 16).unwrap(), 0x1010);
        assert_eq!(a.alloc(1, 4096).unwrap(), 0x2000);
        let mut s = a.split(0x1000).unwrap();
        assert_eq!(s.alloc(0x1000, 1).unwrap(), 0x3000);
        assert!(s.alloc(1, 1).is_err());
        assert!(a.alloc(1, 1).is_err());
        assert!(GuestAlloc::new(u64::MAX - 4, u64::MAX).alloc(8, 1).is_err());
    }

    #[test]
    fn need_event_matches_linux() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(5, 8, 3));
        assert!(!need_event(9, 8, 3));
        assert!(need_event(0xffff, 1, 0xfffe), "wraps");
    }
}
