//! virtio-net: one rx/tx queue pair moving Ethernet frames between the guest
//! and a [`NetBackend`].
//!
//! Every buffer carries a 12-byte `virtio_net_hdr_v1` (virtio 1.x always has
//! `num_buffers`). No offloads are offered, so the guest sends plain frames with
//! a zero header and receives frames with a zero header and `num_buffers = 1`.
//! Frames shorter than 14 or longer than [`MAX_FRAME_LEN`] bytes, in either
//! direction, are counted and dropped; so are malformed chains. A backend error
//! is logged and counted; the guest keeps running.
//!
//! Receive path: the VMM polls [`NetDevice::backend_fd`] (via
//! `PciRoot::backend_fds`) and calls `process_backend` when it is readable; a
//! guest kick of the rx queue runs the same path. When the guest has no rx
//! buffers the device holds one frame back and withdraws its fd (returns
//! `None`) until the guest adds buffers, so a level-triggered poll never spins.

use std::os::fd::RawFd;

use colinux_net::{NetBackend, MAX_FRAME_LEN, MIN_FRAME_LEN};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Chain};
use super::drain_queue;
use super::pci::VirtioPciDevice;
use super::{Completions, VirtioDevice, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC, TYPE_NET};

/// Feature: the `mac` config field is valid.
pub const F_MAC: u64 = 1 << 5;
/// Feature: the `status` config field is valid.
pub const F_STATUS: u64 = 1 << 16;
/// Config status bit: the link is up.
pub const S_LINK_UP: u16 = 1;
/// Length of `virtio_net_hdr_v1`.
pub const HDR_LEN: usize = 12;
/// Index of the receive queue.
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: usize = 1;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most frames read from the backend in one call (to bound an exit's work).
const RX_BUDGET: usize = 1024;

/// Per-device frame counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetDeviceStats {
    /// Frames handed to the backend.
    pub tx_frames: u64,
    /// Guest frames dropped (bad length, malformed chain, backend error).
    pub tx_dropped: u64,
    /// Frames written into guest buffers.
    pub rx_frames: u64,
    /// Backend frames dropped (bad length, device inactive, bad guest buffer).
    pub rx_dropped: u64,
    /// Errors returned by the backend.
    pub backend_errors: u64,
}

/// A virtio network card.
pub struct NetDevice {
    backend: Box<dyn NetBackend>,
    mac: [u8; 6],
    link_up: bool,
    stats: NetDeviceStats,
    pending: Option<Vec<u8>>,
    buf: Vec<u8>,
}

impl NetDevice {
    /// A card with address `mac` moving frames through `backend`.
    pub fn new(backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        NetDevice {
            backend,
            mac,
            link_up: true,
            stats: NetDeviceStats::default(),
            pending: None,
            buf: vec![0; MAX_FRAME_LEN + 1],
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> NetDeviceStats {
        self.stats
    }

    /// The MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sets the link state; returns true if it changed (the transport then
    /// signals a configuration change, see [`VirtioPciDevice::set_link_up`]).
    pub fn set_link_up(&mut self, up: bool) -> bool {
        std::mem::replace(&mut self.link_up, up) != up
    }

    /// Whether a frame is waiting for guest rx buffers.
    pub fn rx_blocked(&self) -> bool {
        self.pending.is_some()
    }

    fn backend_error(&mut self, what: &str, e: std::io::Error) {
        self.stats.backend_errors += 1;
        if self.stats.backend_errors.is_power_of_two() {
            tracing::warn!(error = %e, count = self.stats.backend_errors, "net backend {what} failed");
        }
    }

    fn transmit(&mut self, c: Result<Chain, chain::ChainError>, mem: &GuestMemoryMmap) {
        let c = match c {
            Ok(c) if c.writable.is_empty() => c,
            _ => {
                self.stats.tx_dropped += 1;
                return;
            }
        };
        let total = chain::total_len(&c.readable);
        let frame_len = total.saturating_sub(HDR_LEN as u64);
        if total < HDR_LEN as u64
            || frame_len < MIN_FRAME_LEN as u64
            || frame_len > MAX_FRAME_LEN as u64
        {
            self.stats.tx_dropped += 1;
            return;
        }
        let mut hdr = [0u8; HDR_LEN];
        let n = frame_len as usize;
        if !chain::gather(mem, &c.readable, 0, &mut hdr)
            || !chain::gather(mem, &c.readable, HDR_LEN as u64, &mut self.buf[..n])
        {
            self.stats.tx_dropped += 1;
            return;
        }
        // Without offloads the guest must send no GSO (gso_type == 0).
        if hdr[1] != 0 {
            self.stats.tx_dropped += 1;
            return;
        }
        let frame = self.buf[..n].to_vec();
        match self.backend.send(&frame) {
            Ok(()) => self.stats.tx_frames += 1,
            Err(e) => {
                self.stats.tx_dropped += 1;
                self.backend_error("send", e);
            }
        }
    }

    /// Next frame from the backend: Some(Ok(frame)), Some(Err) for a dropped
    /// frame, None when nothing is waiting or the backend failed.
    fn next_frame(&mut self) -> Option<Option<Vec<u8>>> {
        if let Some(f) = self.pending.take() {
            return Some(Some(f));
        }
        match self.backend.recv(&mut self.buf) {
            Ok(Some(n)) if (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&n) => {
                Some(Some(self.buf[..n].to_vec()))
            }
            Ok(Some(_)) => {
                self.stats.rx_dropped += 1;
                Some(None)
            }
            Ok(None) => None,
            Err(e) => {
                self.backend_error("recv", e);
                None
            }
        }
    }

    /// Moves frames from the backend into rx buffers; returns whether any buffer was used.
    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap, active: bool) -> bool {
        let mut used = false;
        for _ in 0..RX_BUDGET {
            let Some(next) = self.next_frame() else { break };
            let Some(frame) = next else { continue };
            if !active || !queue.ready() {
                self.stats.rx_dropped += 1;
                continue;
            }
            let mut dc = queue.pop_descriptor_chain(mem);
            if dc.is_none() && queue.enable_notification(mem).unwrap_or(false) {
                dc = queue.pop_descriptor_chain(mem);
            }
            let Some(dc) = dc else {
                self.pending = Some(frame);
                break;
            };
            let head = dc.head_index();
            let len = self.deliver(chain::parse(dc, mem), mem, &frame);
            if let Err(e) = queue.add_used(mem, head, len) {
                tracing::debug!(error = %e, "cannot return an rx buffer");
            }
            used = true;
        }
        used
    }

    fn deliver(
        &mut self,
        c: Result<Chain, chain::ChainError>,
        mem: &GuestMemoryMmap,
        frame: &[u8],
    ) -> u32 {
        let total = (HDR_LEN + frame.len()) as u64;
        let ok = match c {
            Ok(c) if c.readable.is_empty() && chain::total_len(&c.writable) >= total => {
                let mut hdr = [0u8; HDR_LEN];
                hdr[10] = 1; // num_buffers
                chain::scatter(mem, &c.writable, 0, &hdr)
                    && chain::scatter(mem, &c.writable, HDR_LEN as u64, frame)
            }
            _ => false,
        };
        if ok {
            self.stats.rx_frames += 1;
            total as u32
        } else {
            self.stats.rx_dropped += 1;
            0
        }
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u16 {
        TYPE_NET
    }
    fn pci_class(&self) -> u32 {
        0x02_00_00 // network, Ethernet
    }
    fn name(&self) -> String {
        let m = self.mac;
        format!(
            "virtio-net {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
    fn features(&self) -> u64 {
        F_MAC | F_STATUS | F_RING_INDIRECT_DESC | F_RING_EVENT_IDX
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 12];
        c[0..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&(if self.link_up { S_LINK_UP } else { 0 }).to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&1500u16.to_le_bytes()); // mtu
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| c.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }
    fn reset(&mut self) {
        self.pending = None;
    }
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Completions {
        let mut done = Completions::default();
        match index {
            TX_QUEUE => {
                let Some(q) = queues.get_mut(TX_QUEUE) else {
                    return done;
                };
                if drain_queue(q, mem, |c| {
                    self.transmit(c, mem);
                    0
                }) {
                    done.add(TX_QUEUE);
                }
            }
            RX_QUEUE => {
                let Some(q) = queues.get_mut(RX_QUEUE) else {
                    return done;
                };
                if self.receive(q, mem, true) {
                    done.add(RX_QUEUE);
                }
            }
            _ => {}
        }
        done
    }
    fn backend_fd(&self) -> Option<RawFd> {
        (!self.rx_blocked()).then(|| self.backend.ready_fd())
    }
    fn process_backend(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
        active: bool,
    ) -> Completions {
        let mut done = Completions::default();
        let Some(q) = queues.get_mut(RX_QUEUE) else {
            return done;
        };
        if self.receive(q, mem, active) {
            done.add(RX_QUEUE);
        }
        done
    }
}

impl VirtioPciDevice<NetDevice> {
    /// Changes the link state seen by the guest and signals a config change.
    pub fn set_link_up(&mut self, up: bool) {
        if self.device_mut().set_link_up(up) {
            self.signal_config_change();
        }
    }
}
