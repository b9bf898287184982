//! The guest's virtio-net driver: a receive ring kept full of buffers, frames
//! sent with a zeroed `virtio_net_hdr_v1` in its own descriptor, completions
//! and received frames taken in the queues' interrupts.

use std::collections::BTreeMap;
use std::time::Duration;

use virtio_bindings::{virtio_ids, virtio_net as vn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::pci::PciFunction;
use super::transport::{self, VirtioPci, F_EVENT_IDX};
use super::virtq::SplitQueue;
use super::GuestAlloc;
use crate::guest::{GuestCpu, GuestError, GuestResult};

/// Feature: MAC in config.
pub const F_MAC: u64 = 1 << vn::VIRTIO_NET_F_MAC;
/// Feature: link status in config.
pub const F_STATUS: u64 = 1 << vn::VIRTIO_NET_F_STATUS;
/// Header length (`virtio_net_hdr_v1`).
pub const HDR_LEN: usize = std::mem::size_of::<vn::virtio_net_hdr_v1>();
/// Size of each receive buffer: header + a VLAN-tagged 1500-byte frame.
pub const RX_BUF_LEN: u32 = (HDR_LEN + 1522) as u32;
/// Slot size in the buffer pools.
const SLOT: u64 = 2048;

/// Counters the driver keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames sent and completed.
    pub tx_frames: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Interrupts taken on the rx vector.
    pub rx_interrupts: u64,
    /// Interrupts taken on the tx vector.
    pub tx_interrupts: u64,
    /// Doorbell writes.
    pub kicks: u64,
    /// Receive buffers the device returned malformed (bad header or length).
    pub rx_bad: u64,
}

/// A virtio-net device driven by the guest.
pub struct NetDriver {
    /// The transport.
    pub dev: VirtioPci,
    /// Receive queue.
    pub rx: SplitQueue,
    /// Transmit queue.
    pub tx: SplitQueue,
    /// MAC address from the device configuration.
    pub mac: [u8; 6],
    /// How long to wait for an interrupt.
    pub patience: Duration,
    /// Counters.
    pub counters: NetCounters,
    rx_pool: u64,
    rx_posted: BTreeMap<u32, u64>,
    rx_free: Vec<u64>,
    tx_pool: u64,
    slots: u16,
}

impl NetDriver {
    /// Brings up `func` (a virtio-net function) with queues of `queue_size`
    /// entries and fills the receive ring.
    pub fn init(
        cpu: &mut GuestCpu,
        func: &PciFunction,
        alloc: &mut GuestAlloc,
        queue_size: u16,
        event_idx: bool,
    ) -> GuestResult<Self> {
        let mut dev = VirtioPci::probe_type(cpu, func, virtio_ids::VIRTIO_ID_NET, "virtio-net")?;
        let wanted = F_MAC | F_STATUS | if event_idx { F_EVENT_IDX } else { 0 };
        let mut q = dev.bring_up(cpu, alloc, wanted, &[queue_size, queue_size])?;
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = dev.config_read(cpu, i as u64, 1)? as u8;
        }
        let slots = queue_size;
        let rx_pool = alloc.alloc(SLOT * u64::from(slots), 4096)?;
        let tx_pool = alloc.alloc(SLOT * u64::from(slots), 4096)?;
        let tx = q.remove(1);
        let rx = q.remove(0);
        let mut d = NetDriver {
            dev,
            rx,
            tx,
            mac,
            patience: Duration::from_secs(5),
            counters: NetCounters::default(),
            rx_pool,
            rx_posted: BTreeMap::new(),
            rx_free: (0..u64::from(slots))
                .rev()
                .map(|i| rx_pool + i * SLOT)
                .collect(),
            tx_pool,
            slots,
        };
        d.refill(cpu)?;
        Ok(d)
    }

    /// The link status bit from the device configuration.
    pub fn link_up(&self, cpu: &mut GuestCpu) -> GuestResult<bool> {
        Ok(self.dev.config_read(cpu, 6, 2)? & 1 != 0)
    }

    /// Posts every free receive buffer; kicks if the device wants it.
    pub fn refill(&mut self, cpu: &mut GuestCpu) -> GuestResult<()> {
        let mem = cpu.mem().clone();
        let mut added = false;
        while let Some(addr) = self.rx_free.pop() {
            match self.rx.add(&mem, &[(addr, RX_BUF_LEN, true)])? {
                Some(head) => {
                    self.rx_posted.insert(u32::from(head), addr);
                    added = true;
                }
                None => {
                    self.rx_free.push(addr);
                    break;
                }
            }
        }
        if added && self.rx.publish(&mem)? {
            self.counters.kicks += 1;
            self.dev.kick(cpu, &self.rx)?;
        }
        Ok(())
    }

    /// Sends `frames` (at most half the queue size at once) and waits until
    /// the device has used every one.
    pub fn send(&mut self, cpu: &mut GuestCpu, frames: &[Vec<u8>]) -> GuestResult<()> {
        let mem = cpu.mem().clone();
        for chunk in frames.chunks(usize::from(self.slots / 2).max(1)) {
            for (i, f) in chunk.iter().enumerate() {
                let slot = self.tx_pool + i as u64 * SLOT;
                if f.len() as u64 > SLOT - HDR_LEN as u64 {
                    return Err(GuestError::Device(format!(
                        "frame of {} bytes too long",
                        f.len()
                    )));
                }
                write(&mem, slot, &[0u8; HDR_LEN])?;
                write(&mem, slot + HDR_LEN as u64, f)?;
                let bufs = [
                    (slot, HDR_LEN as u32, false),
                    (slot + HDR_LEN as u64, f.len() as u32, false),
                ];
                if self.tx.add(&mem, &bufs)?.is_none() {
                    return Err(GuestError::Device("virtio-net: tx queue full".into()));
                }
            }
            if self.tx.publish(&mem)? {
                self.counters.kicks += 1;
                self.dev.kick(cpu, &self.tx)?;
            }
            let vector = transport::vector_of(self.tx.vector);
            let mut left = chunk.len();
            let mut others = Vec::new();
            while left > 0 {
                let got = transport::wait_vector(cpu, vector, self.patience, &mut others);
                while self.tx.pop_used(&mem)?.is_some() {
                    left -= 1;
                    self.counters.tx_frames += 1;
                }
                match got {
                    Ok(()) => self.counters.tx_interrupts += 1,
                    Err(e) if left > 0 => return Err(e),
                    Err(_) => cpu.note("virtio-net: tx completed without an interrupt"),
                }
            }
            self.requeue(cpu, others);
        }
        Ok(())
    }

    /// Puts interrupts meant for another queue back for the next wait.
    fn requeue(&mut self, _cpu: &mut GuestCpu, others: Vec<crate::trace::Interrupt>) {
        let rxv = transport::vector_of(self.rx.vector);
        self.counters.rx_interrupts += others.iter().filter(|i| i.vector() == rxv).count() as u64;
    }

    /// Takes every frame waiting in the receive ring and re-posts the buffers.
    pub fn poll(&mut self, cpu: &mut GuestCpu) -> GuestResult<Vec<Vec<u8>>> {
        let mem = cpu.mem().clone();
        let mut out = Vec::new();
        while let Some((id, len)) = self.rx.pop_used(&mem)? {
            let Some(addr) = self.rx_posted.remove(&id) else {
                return Err(GuestError::Device(format!(
                    "virtio-net: unknown rx id {id}"
                )));
            };
            self.rx_free.push(addr);
            let len = len as usize;
            if len < HDR_LEN || len > RX_BUF_LEN as usize {
                self.counters.rx_bad += 1;
                continue;
            }
            let mut buf = vec![0u8; len];
            read(&mem, addr, &mut buf)?;
            if buf[10..12] != [1, 0] {
                self.counters.rx_bad += 1;
                continue;
            }
            out.push(buf[HDR_LEN..].to_vec());
            self.counters.rx_frames += 1;
        }
        if !out.is_empty() {
            self.refill(cpu)?;
        }
        Ok(out)
    }

    /// Receives until `count` frames arrived; fails if the rx interrupt does
    /// not come within the patience.
    pub fn recv(&mut self, cpu: &mut GuestCpu, count: usize) -> GuestResult<Vec<Vec<u8>>> {
        let vector = transport::vector_of(self.rx.vector);
        let mut others = Vec::new();
        let mut got = Vec::new();
        loop {
            self.counters.rx_interrupts += cpu.take_vector(vector) as u64;
            got.extend(self.poll(cpu)?);
            if got.len() >= count {
                return Ok(got);
            }
            transport::wait_vector(cpu, vector, self.patience, &mut others)?;
            self.counters.rx_interrupts += 1;
        }
    }

    /// Guest address of the receive buffer pool (for hostile tests).
    pub fn rx_pool(&self) -> u64 {
        self.rx_pool
    }
}

fn write(mem: &GuestMemoryMmap, at: u64, data: &[u8]) -> GuestResult<()> {
    mem.write_slice(data, GuestAddress(at))
        .map_err(|_| GuestError::Device(format!("guest RAM write at {at:#x} failed")))
}

fn read(mem: &GuestMemoryMmap, at: u64, data: &mut [u8]) -> GuestResult<()> {
    mem.read_slice(data, GuestAddress(at))
        .map_err(|_| GuestError::Device(format!("guest RAM read at {at:#x} failed")))
}
