//! The guest's virtio-blk driver: requests laid out as Linux lays them out
//! (header, data, status in separate descriptors), submitted in batches, one
//! doorbell per batch, completions taken from the used ring in the interrupt.

use std::time::Duration;

use virtio_bindings::{virtio_blk as vb, virtio_ids};
use vm_memory::{Bytes, GuestAddress};

use super::pci::PciFunction;
use super::transport::{self, VirtioPci, F_EVENT_IDX};
use super::virtq::{Buf, SplitQueue};
use super::GuestAlloc;
use crate::guest::{GuestCpu, GuestError, GuestResult};

/// Request type: read.
pub const T_IN: u32 = vb::VIRTIO_BLK_T_IN;
/// Request type: write.
pub const T_OUT: u32 = vb::VIRTIO_BLK_T_OUT;
/// Request type: flush.
pub const T_FLUSH: u32 = vb::VIRTIO_BLK_T_FLUSH;
/// Request type: get ID.
pub const T_GET_ID: u32 = vb::VIRTIO_BLK_T_GET_ID;
/// Feature: read-only device.
pub const F_RO: u64 = 1 << vb::VIRTIO_BLK_F_RO;
/// Feature: flush supported.
pub const F_FLUSH: u64 = 1 << vb::VIRTIO_BLK_F_FLUSH;
/// Status the driver pre-fills, so an untouched status byte is visible.
pub const STATUS_UNSET: u8 = 0xee;
/// Bytes of scratch RAM per batch.
const SCRATCH: u64 = 4 << 20;

/// One block request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkOp {
    /// Read `sectors` sectors at `sector`.
    Read {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u32,
    },
    /// Write `data` (a whole number of sectors) at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// The data.
        data: Vec<u8>,
    },
    /// Flush.
    Flush,
    /// Read the 20-byte device ID.
    GetId,
}

/// A completed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkDone {
    /// The status byte the device wrote ([`STATUS_UNSET`] if none).
    pub status: u8,
    /// Data read (for reads and GET_ID), as long as requested.
    pub data: Vec<u8>,
    /// Length the device reported in the used ring.
    pub used_len: u32,
    /// Position of this completion in the used ring within its batch.
    pub seq: usize,
}

/// Counters the driver keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlkCounters {
    /// Batches submitted.
    pub batches: u64,
    /// Doorbell writes.
    pub kicks: u64,
    /// Queue interrupts taken.
    pub interrupts: u64,
    /// Batches completed without their interrupt (found by polling after
    /// the patience ran out).
    pub lost_interrupts: u64,
}

/// A virtio-blk device driven by the guest.
pub struct BlkDriver {
    /// The transport.
    pub dev: VirtioPci,
    /// The request queue.
    pub queue: SplitQueue,
    /// Capacity in sectors.
    pub capacity: u64,
    /// Whether the device is read-only.
    pub read_only: bool,
    /// How long to wait for an interrupt.
    pub patience: Duration,
    /// Counters.
    pub counters: BlkCounters,
    /// The interrupt vector completions arrive on.
    pub vector: u8,
    scratch: GuestAlloc,
    scratch_base: GuestAlloc,
}

impl BlkDriver {
    /// Brings up `func` (a virtio-blk function) with a queue of `queue_size`
    /// entries; negotiates EVENT_IDX if `event_idx`.
    pub fn init(
        cpu: &mut GuestCpu,
        func: &PciFunction,
        alloc: &mut GuestAlloc,
        queue_size: u16,
        event_idx: bool,
    ) -> GuestResult<Self> {
        Self::init_with(cpu, func, alloc, queue_size, event_idx, true)
    }

    /// [`BlkDriver::init`], with MSI-X or (`msix` false) the legacy INTx line.
    pub fn init_with(
        cpu: &mut GuestCpu,
        func: &PciFunction,
        alloc: &mut GuestAlloc,
        queue_size: u16,
        event_idx: bool,
        msix: bool,
    ) -> GuestResult<Self> {
        let mut dev = VirtioPci::probe_type(cpu, func, virtio_ids::VIRTIO_ID_BLOCK, "virtio-blk")?;
        let wanted = F_RO | F_FLUSH | if event_idx { F_EVENT_IDX } else { 0 };
        let mut queues = dev.bring_up_with(cpu, alloc, wanted, &[queue_size], msix)?;
        let capacity = dev.config_read(cpu, 0, 8)?;
        let scratch = alloc.split(SCRATCH)?;
        let vector = dev.irq_vector(cpu, &queues[0])?;
        Ok(BlkDriver {
            vector,
            read_only: dev.features & F_RO != 0,
            dev,
            queue: queues.remove(0),
            capacity,
            patience: Duration::from_secs(5),
            counters: BlkCounters::default(),
            scratch,
            scratch_base: scratch,
        })
    }

    /// Submits `ops` as one batch (one doorbell), waits for all of them.
    pub fn submit(&mut self, cpu: &mut GuestCpu, ops: &[BlkOp]) -> GuestResult<Vec<BlkDone>> {
        let mem = cpu.mem().clone();
        self.scratch = self.scratch_base;
        let mut pending: Vec<(u16, u64, u64, usize)> = Vec::new(); // head, data, status, in_len
        for op in ops {
            let hdr = self.scratch.alloc(16, 16)?;
            let (kind, sector, out, in_len): (u32, u64, &[u8], usize) = match op {
                BlkOp::Read { sector, sectors } => (T_IN, *sector, &[], *sectors as usize * 512),
                BlkOp::Write { sector, data } => (T_OUT, *sector, data, 0),
                BlkOp::Flush => (T_FLUSH, 0, &[], 0),
                BlkOp::GetId => (T_GET_ID, 0, &[], 20),
            };
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            write(&mem, hdr, &h)?;
            let mut bufs: Vec<Buf> = vec![(hdr, 16, false)];
            let mut data = 0;
            if !out.is_empty() {
                data = self.scratch.alloc(out.len() as u64, 512)?;
                write(&mem, data, out)?;
                bufs.push((data, out.len() as u32, false));
            }
            if in_len > 0 {
                data = self.scratch.alloc(in_len as u64, 512)?;
                write(&mem, data, &vec![0x5a; in_len])?;
                bufs.push((data, in_len as u32, true));
            }
            let status = self.scratch.alloc(1, 1)?;
            write(&mem, status, &[STATUS_UNSET])?;
            bufs.push((status, 1, true));
            let Some(head) = self.queue.add(&mem, &bufs)? else {
                return Err(GuestError::Device("virtio-blk: queue full".into()));
            };
            pending.push((head, data, status, in_len));
        }
        self.counters.batches += 1;
        cpu.note(format!("virtio-blk: batch {ops:?}", ops = summary(ops)));
        if self.queue.publish(&mem)? {
            self.counters.kicks += 1;
            self.dev.kick(cpu, &self.queue)?;
        }
        let mut done: Vec<Option<BlkDone>> = vec![None; ops.len()];
        let mut outstanding = ops.len();
        let vector = self.vector;
        let intx = self.queue.vector == transport::NO_VECTOR;
        let mut others = Vec::new();
        while outstanding > 0 {
            let got = transport::wait_vector(cpu, vector, self.patience, &mut others);
            if intx && got.is_ok() {
                // The legacy handler reads the ISR, which lowers the line.
                let isr = self.dev.read_isr(cpu)?;
                if isr & 1 == 0 {
                    cpu.note(format!("virtio-blk: INTx with ISR {isr:#x}"));
                }
            }
            let progressed = self.reap(&mem, &pending, &mut done, &mut outstanding)?;
            match got {
                Ok(()) => self.counters.interrupts += 1,
                Err(GuestError::NoInterrupt(_)) if progressed => {
                    self.counters.lost_interrupts += 1;
                    cpu.note("virtio-blk: no interrupt; completions found by polling");
                }
                Err(e) => return Err(e),
            }
        }
        self.counters.interrupts += cpu.take_vector(vector) as u64;
        Ok(done.into_iter().flatten().collect())
    }

    fn reap(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        pending: &[(u16, u64, u64, usize)],
        done: &mut [Option<BlkDone>],
        outstanding: &mut usize,
    ) -> GuestResult<bool> {
        let mut any = false;
        while let Some((id, len)) = self.queue.pop_used(mem)? {
            let Some(k) = pending.iter().position(|p| u32::from(p.0) == id) else {
                return Err(GuestError::Device(format!(
                    "virtio-blk: unknown used id {id}"
                )));
            };
            let (_, data, status, in_len) = pending[k];
            let mut st = [0u8; 1];
            read(mem, status, &mut st)?;
            let mut buf = vec![0u8; in_len];
            if in_len > 0 {
                read(mem, data, &mut buf)?;
            }
            if done[k].is_none() {
                *outstanding -= 1;
            }
            let seq = done.iter().filter(|d| d.is_some()).count();
            done[k] = Some(BlkDone {
                status: st[0],
                data: buf,
                used_len: len,
                seq,
            });
            any = true;
        }
        Ok(any)
    }
}

fn write(mem: &vm_memory::GuestMemoryMmap, at: u64, data: &[u8]) -> GuestResult<()> {
    mem.write_slice(data, GuestAddress(at))
        .map_err(|_| GuestError::Device(format!("guest RAM write at {at:#x} failed")))
}

fn read(mem: &vm_memory::GuestMemoryMmap, at: u64, data: &mut [u8]) -> GuestResult<()> {
    mem.read_slice(data, GuestAddress(at))
        .map_err(|_| GuestError::Device(format!("guest RAM read at {at:#x} failed")))
}

fn summary(ops: &[BlkOp]) -> Vec<String> {
    ops.iter()
        .map(|o| match o {
            BlkOp::Read { sector, sectors } => format!("read {sector}+{sectors}"),
            BlkOp::Write { sector, data } => format!("write {sector}+{}", data.len() / 512),
            BlkOp::Flush => "flush".into(),
            BlkOp::GetId => "get-id".into(),
        })
        .collect()
}
