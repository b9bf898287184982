//! A split virtqueue as a guest driver lays it out in its RAM: descriptor
//! table, available ring (with `used_event`), used ring (with `avail_event`),
//! a free list of descriptors, and Linux's notification rules.

use virtio_bindings::virtio_ring as vr;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::GuestAlloc;
use crate::guest::{GuestError, GuestResult};

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

fn mem_err(what: &str) -> GuestError {
    GuestError::Device(format!("virtqueue: cannot access {what} in guest RAM"))
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
    ) -> GuestResult<Self> {
        let n = u64::from(size);
        let desc = alloc.alloc(16 * n, 4096)?;
        let avail = alloc.alloc(6 + 2 * n, 4096)?;
        let used = alloc.alloc(6 + 8 * n, 4096)?;
        for (a, len) in [(desc, 16 * n), (avail, 6 + 2 * n), (used, 6 + 8 * n)] {
            mem.write_slice(&vec![0u8; len as usize], GuestAddress(a))
                .map_err(|_| mem_err("ring"))?;
        }
        Ok(SplitQueue {
            index,
            size,
            desc,
            avail,
            used,
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

    /// Number of free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains handed to the device and not yet used.
    pub fn in_flight(&self) -> usize {
        self.chains.iter().filter(|c| c.is_some()).count()
    }

    /// Writes descriptor `i` raw (any values: used by hostile-guest tests).
    pub fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> GuestResult<()> {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        let at = self.desc + 16 * u64::from(i % self.size);
        mem.write_slice(&d, GuestAddress(at))
            .map_err(|_| mem_err("descriptor"))
    }

    /// Puts `head` in the next available slot (not yet published).
    pub fn push_avail(&mut self, mem: &GuestMemoryMmap, head: u16) -> GuestResult<()> {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot))
            .map_err(|_| mem_err("available ring"))?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    /// Adds a chain of `bufs` (device-readable first); returns its head, or
    /// `None` when not enough descriptors are free.
    pub fn add(&mut self, mem: &GuestMemoryMmap, bufs: &[Buf]) -> GuestResult<Option<u16>> {
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
            self.write_desc(mem, id, addr, len, flags, next)?;
        }
        let head = ids[0];
        self.chains[usize::from(head)] = Some(ids);
        self.push_avail(mem, head)?;
        Ok(Some(head))
    }

    /// Publishes the new available index; true if the device wants a kick
    /// (Linux's `virtqueue_kick_prepare`).
    pub fn publish(&mut self, mem: &GuestMemoryMmap) -> GuestResult<bool> {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .map_err(|_| mem_err("available index"))?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let old = self.kicked_idx;
        let new = self.avail_idx;
        self.kicked_idx = new;
        if new == old {
            return Ok(false);
        }
        if self.event_idx {
            let ev: u16 = mem
                .read_obj(GuestAddress(self.used + 4 + 8 * u64::from(self.size)))
                .map_err(|_| mem_err("avail_event"))?;
            Ok(need_event(ev, new, old))
        } else {
            let flags: u16 = mem
                .read_obj(GuestAddress(self.used))
                .map_err(|_| mem_err("used flags"))?;
            Ok(flags & USED_F_NO_NOTIFY == 0)
        }
    }

    /// Takes the next used element: (head id, length written). Frees its
    /// descriptors; with `EVENT_IDX` asks for an interrupt at the next one.
    pub fn pop_used(&mut self, mem: &GuestMemoryMmap) -> GuestResult<Option<(u32, u32)>> {
        let idx: u16 = mem
            .read_obj(GuestAddress(self.used + 2))
            .map_err(|_| mem_err("used index"))?;
        if idx == self.last_used {
            return Ok(None);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let slot = u64::from(self.last_used % self.size);
        let at = self.used + 4 + 8 * slot;
        let id: u32 = mem
            .read_obj(GuestAddress(at))
            .map_err(|_| mem_err("used element"))?;
        let len: u32 = mem
            .read_obj(GuestAddress(at + 4))
            .map_err(|_| mem_err("used element"))?;
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            mem.write_obj(
                self.last_used,
                GuestAddress(self.avail + 4 + 2 * u64::from(self.size)),
            )
            .map_err(|_| mem_err("used_event"))?;
        }
        match self.chains.get_mut(id as usize).and_then(Option::take) {
            Some(ids) => self.free.extend(ids.into_iter().rev()),
            None => {
                return Err(GuestError::Device(format!(
                    "queue {}: device returned id {id}, which is not in flight",
                    self.index
                )))
            }
        }
        Ok(Some((id, len)))
    }

    /// Forgets a raw chain whose descriptors were written with
    /// [`SplitQueue::write_desc`]: marks `ids` as in flight under `head`.
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
    fn need_event_matches_linux() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(5, 8, 3));
        assert!(!need_event(9, 8, 3));
        assert!(need_event(0xffff, 1, 0xfffe), "wraps");
    }
}
