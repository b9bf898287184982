//! Test-side machine and mini virtio driver: guest RAM, a recording interrupt
//! sink, the PCI root reached only through the 0xCF8/0xCFC ports and the MMIO
//! window, and a split-ring driver that lays queues out in guest memory the
//! way Linux's virtio_pci_modern + virtio_ring do.
#![allow(dead_code)]

pub mod loopback;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use colinux_devices::bus::BusDevice;
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::pci::{MmioWindow, PciConfigIo, PciDevice, PciMmio, PciRoot};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// RAM: two regions with a hole between them, so chains can straddle it.
pub const RAM_LOW: (u64, usize) = (0, 0x8_0000);
pub const RAM_HIGH: (u64, usize) = (0x10_0000, 0x8_0000);
pub const WINDOW: MmioWindow = MmioWindow {
    base: 0xc000_0000,
    size: 0x100_0000,
};
pub const MSI_ADDR: u64 = 0xfee0_0000;

pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(RAM_LOW.0), RAM_LOW.1),
        (GuestAddress(RAM_HIGH.0), RAM_HIGH.1),
    ])
    .unwrap()
}

/// One delivered interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Irq {
    Msi { addr: u64, data: u32 },
    Line { irq: u32, level: bool },
}

/// An interrupt sink that records everything.
#[derive(Default)]
pub struct RecordingSink(pub Mutex<Vec<Irq>>);

impl RecordingSink {
    pub fn take(&self) -> Vec<Irq> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    pub fn msi_data(&self) -> Vec<u32> {
        self.take()
            .into_iter()
            .filter_map(|i| match i {
                Irq::Msi { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }
}

impl InterruptSink for RecordingSink {
    fn send_msi(&self, addr: u64, data: u32) -> std::io::Result<()> {
        self.0.lock().unwrap().push(Irq::Msi { addr, data });
        Ok(())
    }
    fn set_irq_line(&self, irq: u32, level: bool) -> std::io::Result<()> {
        self.0.lock().unwrap().push(Irq::Line { irq, level });
        Ok(())
    }
}

/// The machine as the guest sees it: config ports, MMIO window, RAM.
pub struct Machine {
    pub root: Arc<Mutex<PciRoot>>,
    pub cfg: PciConfigIo,
    pub mmio: PciMmio,
    pub mem: GuestMemoryMmap,
    pub sink: Arc<RecordingSink>,
}

impl Machine {
    pub fn new() -> Self {
        let root = Arc::new(Mutex::new(PciRoot::new(WINDOW)));
        Machine {
            cfg: PciConfigIo::new(root.clone()),
            mmio: PciMmio::new(root.clone()),
            root,
            mem: guest_memory(),
            sink: Arc::new(RecordingSink::default()),
        }
    }

    pub fn add(&self, dev: Box<dyn PciDevice>) -> u8 {
        self.root.lock().unwrap().add_device(dev).unwrap()
    }

    fn select(&mut self, slot: u8, reg: u8) {
        let addr = 0x8000_0000u32 | (u32::from(slot) << 11) | u32::from(reg & 0xfc);
        self.cfg.write(0, &addr.to_le_bytes());
    }

    pub fn cfg_read(&mut self, slot: u8, reg: u8, len: usize) -> u32 {
        self.select(slot, reg);
        let mut b = [0u8; 4];
        self.cfg.read(4 + u64::from(reg & 3), &mut b[..len]);
        u32::from_le_bytes(b)
    }

    pub fn cfg_write(&mut self, slot: u8, reg: u8, len: usize, v: u32) {
        self.select(slot, reg);
        self.cfg
            .write(4 + u64::from(reg & 3), &v.to_le_bytes()[..len]);
    }

    pub fn mmio_read(&mut self, addr: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        if (WINDOW.base..WINDOW.base + WINDOW.size).contains(&addr) {
            self.mmio.read(addr - WINDOW.base, &mut b[..len]);
        } else {
            self.root.lock().unwrap().mmio_read(addr, &mut b[..len]);
        }
        u64::from_le_bytes(b)
    }

    pub fn mmio_write(&mut self, addr: u64, len: usize, v: u64) {
        if (WINDOW.base..WINDOW.base + WINDOW.size).contains(&addr) {
            self.mmio.write(addr - WINDOW.base, &v.to_le_bytes()[..len]);
        } else {
            self.root
                .lock()
                .unwrap()
                .mmio_write(addr, &v.to_le_bytes()[..len]);
        }
    }
}

/// Virtio status bits.
pub const ACK: u8 = 1;
pub const DRIVER: u8 = 2;
pub const DRIVER_OK: u8 = 4;
pub const FEATURES_OK: u8 = 8;
pub const VERSION_1: u64 = 1 << 32;
pub const EVENT_IDX: u64 = 1 << 29;

pub use colinux_virtq_driver::{GuestAlloc, RawRing, DESC_NEXT, DESC_WRITE};

/// Where the virtio structures are, as found by walking the capability list.
#[derive(Debug, Default, Clone, Copy)]
pub struct Layout {
    pub bar0: u64,
    pub common: u64,
    pub notify: u64,
    pub notify_mult: u32,
    pub isr: u64,
    pub device: u64,
    pub msix_cap: u8,
    pub msix_table: u64,
    pub msix_vectors: u16,
    pub pci_cfg_cap: u8,
}

/// A guest-side split ring with the simplest bookkeeping: chains take
/// consecutive descriptor indexes and nothing is freed, so a test knows every
/// head in advance and may write anything raw (the ring format itself is
/// `colinux-virtq-driver`'s, shared with the scripted guest's drivers).
#[derive(Debug, Clone)]
pub struct DriverQueue {
    pub index: u16,
    pub ring: RawRing,
    pub next_desc: u16,
    pub avail_idx: u16,
    pub last_used: u16,
}

/// `q.desc`, `q.avail`, `q.size`...: the ring's places, read through.
impl std::ops::Deref for DriverQueue {
    type Target = RawRing;
    fn deref(&self) -> &RawRing {
        &self.ring
    }
}

impl DriverQueue {
    /// Writes a chain of `(addr, len, writable)` buffers at consecutive
    /// descriptor indexes and publishes it; returns the head.
    pub fn add_chain(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)]) -> u16 {
        let size = self.ring.size;
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let idx = (head + i as u16) % size;
            let next = (idx + 1) % size;
            let mut flags = if write { DESC_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= DESC_NEXT;
            }
            self.write_desc(mem, idx, addr, len, flags, next);
        }
        self.next_desc = (head + bufs.len() as u16) % size;
        self.publish(mem, head);
        head
    }

    /// Writes descriptor `idx` with any values.
    pub fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        idx: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        self.ring
            .write_desc(mem, idx, addr, len, flags, next)
            .unwrap();
    }

    /// Puts `head` in the avail ring and bumps `avail.idx`.
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        self.ring
            .set_avail_entry(mem, self.avail_idx, head)
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ring.set_avail_idx(mem, self.avail_idx).unwrap();
    }

    /// Sets `used_event` (meaningful with EVENT_IDX).
    pub fn set_used_event(&self, mem: &GuestMemoryMmap, v: u16) {
        self.ring.set_used_event(mem, v).unwrap();
    }

    /// Next used element `(id, len)`, if any.
    pub fn pop_used(&mut self, mem: &GuestMemoryMmap) -> Option<(u32, u32)> {
        if self.ring.used_idx(mem).unwrap() == self.last_used {
            return None;
        }
        let e = self.ring.used_elem(mem, self.last_used).unwrap();
        self.last_used = self.last_used.wrapping_add(1);
        Some(e)
    }
}

/// Drives one virtio-pci function through config ports and BAR 0.
pub struct VirtioDriver {
    pub slot: u8,
    pub layout: Layout,
    pub queues: Vec<DriverQueue>,
    pub features: u64,
    next_buf: u64,
}

impl VirtioDriver {
    /// Walks the capability list like virtio_pci_modern_probe.
    pub fn probe(m: &mut Machine, slot: u8) -> Self {
        assert_eq!(m.cfg_read(slot, 0, 2), 0x1af4, "virtio vendor");
        let bar_lo = m.cfg_read(slot, 0x10, 4);
        assert_eq!(bar_lo & 0b110, 0b100, "BAR 0 is 64-bit memory");
        let bar0 = u64::from(m.cfg_read(slot, 0x14, 4)) << 32 | u64::from(bar_lo & !0xf);
        let mut l = Layout {
            bar0,
            ..Layout::default()
        };
        let mut cap = m.cfg_read(slot, 0x34, 1) as u8;
        let mut guard = 0;
        while cap != 0 {
            guard += 1;
            assert!(guard < 48, "capability list loops");
            let id = m.cfg_read(slot, cap, 1) as u8;
            let next = m.cfg_read(slot, cap + 1, 1) as u8;
            if id == 0x09 {
                let kind = m.cfg_read(slot, cap + 3, 1) as u8;
                let bar = m.cfg_read(slot, cap + 4, 1);
                let off = u64::from(m.cfg_read(slot, cap + 8, 4));
                match kind {
                    1 => l.common = bar0 + off,
                    2 => {
                        l.notify = bar0 + off;
                        l.notify_mult = m.cfg_read(slot, cap + 16, 4);
                    }
                    3 => l.isr = bar0 + off,
                    4 => l.device = bar0 + off,
                    5 => l.pci_cfg_cap = cap,
                    _ => {}
                }
                if kind != 5 {
                    assert_eq!(bar, 0);
                }
            } else if id == 0x11 {
                l.msix_cap = cap;
                l.msix_vectors = (m.cfg_read(slot, cap + 2, 2) as u16 & 0x7ff) + 1;
                let t = m.cfg_read(slot, cap + 4, 4);
                assert_eq!(t & 7, 0, "MSI-X table in BAR 0");
                l.msix_table = bar0 + u64::from(t & !7);
            }
            cap = next;
        }
        assert!(
            l.common != 0
                && l.notify != 0
                && l.isr != 0
                && l.device != 0
                && l.pci_cfg_cap != 0
                && l.msix_cap != 0
        );
        VirtioDriver {
            slot,
            layout: l,
            queues: Vec::new(),
            features: 0,
            next_buf: 0x4_0000,
        }
    }

    pub fn common_read(&self, m: &mut Machine, off: u64, len: usize) -> u64 {
        m.mmio_read(self.layout.common + off, len)
    }

    pub fn common_write(&self, m: &mut Machine, off: u64, len: usize, v: u64) {
        m.mmio_write(self.layout.common + off, len, v)
    }

    pub fn status(&self, m: &mut Machine) -> u8 {
        self.common_read(m, 20, 1) as u8
    }

    pub fn set_status(&self, m: &mut Machine, s: u8) {
        self.common_write(m, 20, 1, u64::from(s));
    }

    /// Enables memory decoding, bus mastering and (optionally) MSI-X with
    /// vector `v` sending data `0x30 + v`.
    pub fn enable_pci(&self, m: &mut Machine, msix: bool) {
        let cmd = m.cfg_read(self.slot, 4, 2);
        m.cfg_write(self.slot, 4, 2, cmd | 0b110);
        if msix {
            for v in 0..u64::from(self.layout.msix_vectors) {
                let e = self.layout.msix_table + 16 * v;
                m.mmio_write(e, 4, MSI_ADDR);
                m.mmio_write(e + 4, 4, 0);
                m.mmio_write(e + 8, 4, 0x30 + v);
                m.mmio_write(e + 12, 4, 0);
            }
            let ctrl = m.cfg_read(self.slot, self.layout.msix_cap + 2, 2);
            m.cfg_write(self.slot, self.layout.msix_cap + 2, 2, ctrl | 0x8000);
        }
    }

    /// Full virtio 1.x initialisation; accepts `offered & wanted`; queue `i`
    /// gets MSI-X vector `i + 1`, config changes vector 0. Queues are sized
    /// `queue_size` (or the device maximum when 0).
    pub fn init(&mut self, m: &mut Machine, wanted: u64, msix: bool, queue_size: u16) -> u64 {
        self.enable_pci(m, msix);
        self.set_status(m, 0);
        assert_eq!(self.status(m), 0);
        self.set_status(m, ACK);
        self.set_status(m, ACK | DRIVER);
        self.common_write(m, 0, 4, 0);
        let lo = self.common_read(m, 4, 4);
        self.common_write(m, 0, 4, 1);
        let hi = self.common_read(m, 4, 4);
        let offered = hi << 32 | lo;
        assert!(offered & VERSION_1 != 0);
        let feat = offered & (wanted | VERSION_1);
        self.common_write(m, 8, 4, 0);
        self.common_write(m, 12, 4, feat & 0xffff_ffff);
        self.common_write(m, 8, 4, 1);
        self.common_write(m, 12, 4, feat >> 32);
        self.set_status(m, ACK | DRIVER | FEATURES_OK);
        assert_eq!(
            self.status(m) & FEATURES_OK,
            FEATURES_OK,
            "features accepted"
        );
        if msix {
            self.common_write(m, 16, 2, 0);
            assert_eq!(self.common_read(m, 16, 2), 0);
        }
        let nq = self.common_read(m, 18, 2) as u16;
        self.queues.clear();
        // Rings below the buffers (which start at 0x4_0000).
        let mut rings = GuestAlloc::new(0x1000, 0x4_0000);
        for i in 0..nq {
            self.common_write(m, 22, 2, u64::from(i));
            let max = self.common_read(m, 24, 2) as u16;
            let size = if queue_size == 0 {
                max
            } else {
                queue_size.min(max)
            };
            self.common_write(m, 24, 2, u64::from(size));
            assert_eq!(self.common_read(m, 24, 2) as u16, size);
            if msix {
                self.common_write(m, 26, 2, u64::from(i) + 1);
                assert_eq!(self.common_read(m, 26, 2), u64::from(i) + 1);
            }
            let ring = RawRing::lay_out(&m.mem, &mut rings, size).unwrap();
            let q = DriverQueue {
                index: i,
                ring,
                next_desc: 0,
                avail_idx: 0,
                last_used: 0,
            };
            // Program the addresses as two 32-bit halves.
            for (off, addr) in [(32u64, ring.desc), (40, ring.avail), (48, ring.used)] {
                self.common_write(m, off, 4, addr & 0xffff_ffff);
                self.common_write(m, off + 4, 4, addr >> 32);
            }
            assert_eq!(self.common_read(m, 32, 8), ring.desc);
            self.common_write(m, 28, 2, 1);
            assert_eq!(self.common_read(m, 28, 2), 1);
            self.queues.push(q);
        }
        self.set_status(m, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(self.status(m), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        self.features = feat;
        feat
    }

    /// Rings queue `q`'s doorbell like vp_notify (a 16-bit write of the index).
    pub fn kick(&self, m: &mut Machine, q: u16) {
        m.mmio_write(
            self.layout.notify + u64::from(q) * u64::from(self.layout.notify_mult),
            2,
            u64::from(q),
        );
    }

    /// A fresh buffer of `len` bytes in guest RAM (low region, 16-aligned).
    pub fn alloc(&mut self, len: usize) -> u64 {
        let a = self.next_buf;
        self.next_buf = (a + len as u64 + 15) & !15;
        if self.next_buf >= RAM_LOW.1 as u64 {
            self.next_buf = 0x4_0000;
            return self.alloc(len);
        }
        a
    }

    pub fn device_cfg(&self, m: &mut Machine, off: u64, len: usize) -> u64 {
        m.mmio_read(self.layout.device + off, len)
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh temporary directory (removed by [`TempDir`]'s drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("colinux-devices-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
