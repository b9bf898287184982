//! virtio-net: one rx/tx queue pair moving Ethernet frames between the guest
//! and a [`NetBackend`].
//!
//! Every buffer carries a 12-byte `virtio_net_hdr_v1` (virtio 1.x always has
//! `num_buffers`). Guest to host, the device offers checksum offload and TSO
//! ([`F_CSUM`], [`F_HOST_TSO4`], [`F_HOST_TSO6`], [`F_HOST_ECN`]) when the
//! backend takes them ([`NetBackend::offloads`], the TAP): the guest's header is
//! checked ([`VnetHdr::check_tx`]) and passed on with the frame, which may then
//! be a super-frame of up to [`MAX_GSO_FRAME_LEN`] bytes; a header that asks
//! for anything not negotiated is counted and the frame dropped. Otherwise the
//! guest sends plain frames with a zero header. No `GUEST_*` offload is
//! offered: the guest receives finished frames with a zero header and
//! `num_buffers = 1`.
//! Other frames shorter than 14 or longer than [`MAX_FRAME_LEN`] bytes, in
//! either direction, are counted and dropped; so are malformed chains. A backend
//! error is logged and counted; the guest keeps running.
//!
//! Receive path: the VMM polls [`NetDevice::backend_fd`] (via
//! `PciRoot::backend_fds`) and calls `process_backend` when it is readable; a
//! guest kick of the rx queue runs the same path. When the guest has no rx
//! buffers the device holds one frame back and withdraws its fd (returns
//! `None`) until the guest adds buffers, so a level-triggered poll never spins.
//!
//! [`MAX_GSO_FRAME_LEN`]: colinux_net::vnet::MAX_GSO_FRAME_LEN

use std::os::fd::RawFd;

use colinux_net::vnet::{GSO_NONE, VNET_HDR_LEN};
use colinux_net::{NetBackend, Offloads, VnetHdr, MAX_FRAME_LEN, MIN_FRAME_LEN};
use virtio_bindings::virtio_net as vn;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Chain};
use super::drain_queue;
use super::pci::VirtioPciDevice;
use super::{feature, Completions, VirtioDevice, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC, TYPE_NET};

// The virtio-net numbers, from `virtio-bindings`.

/// Feature: the driver may leave TCP/UDP checksums to the device.
pub const F_CSUM: u64 = feature(vn::VIRTIO_NET_F_CSUM);
/// Feature: the driver may send TCP/IPv4 super-frames (TSO).
pub const F_HOST_TSO4: u64 = feature(vn::VIRTIO_NET_F_HOST_TSO4);
/// Feature: the driver may send TCP/IPv6 super-frames (TSO).
pub const F_HOST_TSO6: u64 = feature(vn::VIRTIO_NET_F_HOST_TSO6);
/// Feature: the driver may send super-frames with ECN.
pub const F_HOST_ECN: u64 = feature(vn::VIRTIO_NET_F_HOST_ECN);
/// Feature: the `mac` config field is valid.
pub const F_MAC: u64 = feature(vn::VIRTIO_NET_F_MAC);
/// Feature: the `status` config field is valid.
pub const F_STATUS: u64 = feature(vn::VIRTIO_NET_F_STATUS);
/// Config status bit: the link is up.
pub const S_LINK_UP: u16 = vn::VIRTIO_NET_S_LINK_UP as u16;
/// Length of `virtio_net_hdr_v1`.
pub const HDR_LEN: usize = std::mem::size_of::<vn::virtio_net_hdr_v1>();
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
    /// Guest frames dropped because their virtio-net header was refused
    /// (also counted in `tx_dropped`).
    pub tx_bad_header: u64,
    /// Guest super-frames (TSO) handed to the backend (also in `tx_frames`).
    pub tx_gso_frames: u64,
}

/// A virtio network card.
pub struct NetDevice {
    backend: Box<dyn NetBackend>,
    /// What the backend takes, as offered to the driver.
    offered: Offloads,
    /// What the driver accepted (none until activation).
    negotiated: Offloads,
    mac: [u8; 6],
    link_up: bool,
    stats: NetDeviceStats,
    /// Length of the frame in `rx_buf` that waits for guest rx buffers.
    pending: Option<usize>,
    /// Guest-to-host frames are gathered here (up to a TSO super-frame).
    buf: Vec<u8>,
    /// Host-to-guest frames are read here, and one may wait here: apart from
    /// `buf`, so a transmit never overwrites a frame held back.
    rx_buf: Vec<u8>,
}

impl NetDevice {
    /// A card with address `mac` moving frames through `backend`.
    pub fn new(backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        let offered = backend.offloads().normalized();
        NetDevice {
            backend,
            offered,
            negotiated: Offloads::NONE,
            mac,
            link_up: true,
            stats: NetDeviceStats::default(),
            pending: None,
            buf: vec![0; offered.max_frame_len().max(MAX_FRAME_LEN)],
            rx_buf: vec![0; MAX_FRAME_LEN + 1],
        }
    }

    /// Guest-to-host offloads the driver negotiated (none before activation).
    pub fn offloads(&self) -> Offloads {
        self.negotiated
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
            crate::guest_log!(warn, error = %e, count = self.stats.backend_errors, "net backend {what} failed");
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
            || frame_len > self.negotiated.max_frame_len() as u64
        {
            self.stats.tx_dropped += 1;
            return;
        }
        let mut head = [0u8; VNET_HDR_LEN];
        let n = frame_len as usize;
        let Some(frame) = self.buf.get_mut(..n) else {
            self.stats.tx_dropped += 1;
            return;
        };
        if !chain::gather(mem, &c.readable, 0, &mut head)
            || !chain::gather(mem, &c.readable, HDR_LEN as u64, frame)
        {
            self.stats.tx_dropped += 1;
            return;
        }
        let hdr = VnetHdr::parse(&head);
        if let Err(e) = hdr.check_tx(frame, self.negotiated) {
            self.stats.tx_dropped += 1;
            self.stats.tx_bad_header += 1;
            if self.stats.tx_bad_header.is_power_of_two() {
                crate::guest_log!(warn, error = %e, count = self.stats.tx_bad_header, "guest frame with a bad virtio-net header dropped");
            }
            return;
        }
        let res = if hdr.is_plain() {
            self.backend.send(frame)
        } else {
            self.backend.send_offloaded(&hdr, frame)
        };
        match res {
            Ok(()) => {
                self.stats.tx_frames += 1;
                if hdr.gso_type != GSO_NONE {
                    self.stats.tx_gso_frames += 1;
                }
            }
            Err(e) => {
                self.stats.tx_dropped += 1;
                self.backend_error("send", e);
            }
        }
    }

    /// Next frame from the backend, in `rx_buf`: Some(Some(length)), Some(None)
    /// for a dropped frame, None when nothing is waiting or the backend failed.
    fn next_frame(&mut self) -> Option<Option<usize>> {
        if let Some(n) = self.pending.take() {
            return Some(Some(n));
        }
        match self.backend.recv(&mut self.rx_buf) {
            Ok(Some(n)) if (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&n) => Some(Some(n)),
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
            let Some(frame_len) = next else { continue };
            if !active || !queue.ready() {
                self.stats.rx_dropped += 1;
                continue;
            }
            let mut dc = super::pop_chain(queue, mem);
            if dc.is_none() && queue.enable_notification(mem).unwrap_or(false) {
                dc = super::pop_chain(queue, mem);
            }
            let Some(dc) = dc else {
                self.pending = Some(frame_len);
                break;
            };
            let head = dc.head_index();
            let len = self.deliver(chain::parse(dc, mem), mem, frame_len);
            super::return_used(queue, mem, head, len);
            used = true;
        }
        used
    }

    fn deliver(
        &mut self,
        c: Result<Chain, chain::ChainError>,
        mem: &GuestMemoryMmap,
        frame_len: usize,
    ) -> u32 {
        let frame = &self.rx_buf[..frame_len];
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
        let o = self.offered;
        let bit = |on: bool, f: u64| if on { f } else { 0 };
        F_MAC
            | F_STATUS
            | F_RING_INDIRECT_DESC
            | F_RING_EVENT_IDX
            | bit(o.csum, F_CSUM)
            | bit(o.tso4, F_HOST_TSO4)
            | bit(o.tso6, F_HOST_TSO6)
            | bit(o.tso_ecn, F_HOST_ECN)
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }
    fn config_space(&self) -> Vec<u8> {
        let mut c = vec![0u8; 12];
        c[0..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&(if self.link_up { S_LINK_UP } else { 0 }).to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&1500u16.to_le_bytes()); // mtu
        c
    }
    fn activate(&mut self, features: u64) {
        let on = |f: u64| features & f != 0;
        let asked = Offloads {
            csum: on(F_CSUM),
            tso4: on(F_HOST_TSO4),
            tso6: on(F_HOST_TSO6),
            tso_ecn: on(F_HOST_ECN),
        };
        self.negotiated = asked.intersect(self.offered).normalized();
        if self.negotiated.any() {
            crate::guest_log!(info, offloads = ?self.negotiated, "virtio-net guest-to-host offloads on");
        }
    }
    fn reset(&mut self) {
        self.pending = None;
        self.negotiated = Offloads::NONE;
    }
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Completions {
        match index {
            TX_QUEUE => Completions::of_queue(queues, TX_QUEUE, |q| {
                drain_queue(q, mem, |c| {
                    self.transmit(c, mem);
                    0
                })
            }),
            RX_QUEUE => Completions::of_queue(queues, RX_QUEUE, |q| self.receive(q, mem, true)),
            _ => Completions::default(),
        }
    }
    fn backend_fd(&self) -> Option<RawFd> {
        (!self.rx_blocked()).then(|| self.backend.ready_fd())
    }
    fn poll_fds(&mut self, fds: &mut Vec<libc::pollfd>, timeout_ms: &mut i32) {
        self.backend.poll_fds(fds, timeout_ms);
    }
    fn poll_done(&mut self, fds: &[libc::pollfd]) {
        self.backend.poll_done(fds);
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
