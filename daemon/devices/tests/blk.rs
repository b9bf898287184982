//! virtio-blk through PCI: requests checked against an in-memory oracle,
//! read-only refusal, interrupt batching, INTx fallback, reset.

mod common;

use colinux_devices::block::DiskImage;
use colinux_devices::virtio::blk::{self, BlockDevice};
use colinux_devices::virtio::pci::VirtioPciDevice;
use common::*;
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};

const SECTORS: u64 = 64;

struct Disk {
    m: Machine,
    d: VirtioDriver,
    _dir: TempDir,
    path: std::path::PathBuf,
}

fn disk_with(contents: &[u8], read_only: bool, wanted: u64) -> Disk {
    let dir = TempDir::new();
    let path = dir.file("root.img", contents);
    let mut m = Machine::new();
    let image = DiskImage::open(&path, read_only).unwrap();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(image, "cobd3"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, wanted, true, 0);
    Disk {
        m,
        d,
        _dir: dir,
        path,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The request as Linux lays it out: header, data, status in separate descriptors.
struct Req {
    kind: u32,
    sector: u64,
    out: Vec<u8>,
    in_len: usize,
}

impl Disk {
    fn submit(&mut self, r: &Req) -> (u16, u64, u64) {
        let hdr = self.d.alloc(16);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&r.kind.to_le_bytes());
        h[8..16].copy_from_slice(&r.sector.to_le_bytes());
        self.m.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        let mut bufs = vec![(hdr, 16u32, false)];
        if !r.out.is_empty() {
            let a = self.d.alloc(r.out.len());
            self.m.mem.write_slice(&r.out, GuestAddress(a)).unwrap();
            bufs.push((a, r.out.len() as u32, false));
        }
        let data_in = self.d.alloc(r.in_len.max(1));
        if r.in_len > 0 {
            self.m
                .mem
                .write_slice(&vec![0xaa; r.in_len], GuestAddress(data_in))
                .unwrap();
            bufs.push((data_in, r.in_len as u32, true));
        }
        let status = self.d.alloc(1);
        self.m.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        bufs.push((status, 1, true));
        let head = self.d.queues[0].add_chain(&self.m.mem, &bufs);
        (head, data_in, status)
    }

    /// Submits, kicks, and returns (status, data read, used len).
    fn run(&mut self, r: Req) -> (u8, Vec<u8>, u32) {
        let (head, data_in, status) = self.submit(&r);
        self.d.kick(&mut self.m, 0);
        let (id, len) = self.d.queues[0]
            .pop_used(&self.m.mem)
            .expect("request completed");
        assert_eq!(id, u32::from(head));
        let mut data = vec![0u8; r.in_len];
        self.m
            .mem
            .read_slice(&mut data, GuestAddress(data_in))
            .unwrap();
        (
            self.m.mem.read_obj(GuestAddress(status)).unwrap(),
            data,
            len,
        )
    }

    fn read(&mut self, sector: u64, sectors: usize) -> (u8, Vec<u8>) {
        let (s, d, len) = self.run(Req {
            kind: blk::T_IN,
            sector,
            out: vec![],
            in_len: sectors * 512,
        });
        if s == blk::S_OK {
            assert_eq!(len as usize, sectors * 512 + 1);
        }
        (s, d)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> u8 {
        self.run(Req {
            kind: blk::T_OUT,
            sector,
            out: data.to_vec(),
            in_len: 0,
        })
        .0
    }

    fn ranged(&mut self, kind: u32, sector: u64, count: u32, flags: u32) -> u8 {
        let mut seg = vec![0u8; 16];
        seg[0..8].copy_from_slice(&sector.to_le_bytes());
        seg[8..12].copy_from_slice(&count.to_le_bytes());
        seg[12..16].copy_from_slice(&flags.to_le_bytes());
        self.run(Req {
            kind,
            sector: 0,
            out: seg,
            in_len: 0,
        })
        .0
    }
}

#[test]
fn config_space_reports_capacity_and_features() {
    let mut disk = disk_with(&vec![0u8; (SECTORS * 512) as usize], false, !0);
    let cap = disk.d.device_cfg(&mut disk.m, 0, 8);
    assert_eq!(cap, SECTORS);
    assert_eq!(disk.d.device_cfg(&mut disk.m, 20, 4), 512, "blk_size");
    let f = disk.d.features;
    assert_eq!(f & blk::F_RO, 0);
    assert_ne!(f & blk::F_FLUSH, 0);
    assert_ne!(f & blk::F_WRITE_ZEROES, 0);
    assert_eq!(
        disk.m.cfg_read(disk.d.slot, 2, 2),
        0x1042,
        "virtio-blk modern device ID"
    );
}

#[test]
fn get_id_returns_the_serial() {
    let mut disk = disk_with(&vec![0u8; 4096], false, !0);
    let (s, id, len) = disk.run(Req {
        kind: blk::T_GET_ID,
        sector: 0,
        out: vec![],
        in_len: 20,
    });
    assert_eq!(s, blk::S_OK);
    assert_eq!(&id[..5], b"cobd3");
    assert!(id[5..].iter().all(|&b| b == 0));
    assert_eq!(len, 21);
}

#[test]
fn unknown_request_and_out_of_range_are_refused() {
    let mut disk = disk_with(&vec![0u8; (SECTORS * 512) as usize], false, !0);
    assert_eq!(
        disk.run(Req {
            kind: 99,
            sector: 0,
            out: vec![],
            in_len: 0
        })
        .0,
        blk::S_UNSUPP
    );
    assert_eq!(disk.read(SECTORS - 1, 2).0, blk::S_IOERR);
    assert_eq!(disk.read(u64::MAX, 1).0, blk::S_IOERR);
    assert_eq!(disk.write(SECTORS, &[1u8; 512]), blk::S_IOERR);
    assert_eq!(
        disk.write(0, &[1u8; 100]),
        blk::S_IOERR,
        "partial sector write"
    );
    assert_eq!(disk.read(SECTORS - 1, 1).0, blk::S_OK);
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, u8, u8),
    Read(u64, u8),
    Flush,
    Discard(u64, u8),
    Zero(u64, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..SECTORS, 1u8..9, any::<u8>()).prop_map(|(s, n, seed)| Op::Write(s, n, seed)),
        (0..SECTORS, 1u8..9).prop_map(|(s, n)| Op::Read(s, n)),
        Just(Op::Flush),
        (0..SECTORS, 1u8..17).prop_map(|(s, n)| Op::Discard(s, n)),
        (0..SECTORS, 1u8..17, any::<bool>()).prop_map(|(s, n, u)| Op::Zero(s, n, u)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random read/write/flush/discard/write-zeroes sequences agree with a
    /// byte-array oracle, both through the guest and in the host file.
    #[test]
    fn requests_match_an_in_memory_oracle(ops in prop::collection::vec(op(), 1..40)) {
        let init = pattern((SECTORS * 512) as usize, 7);
        let mut oracle = init.clone();
        let mut disk = disk_with(&init, false, !0);
        let discard = disk.d.features & blk::F_DISCARD != 0;
        for o in ops {
            let fits = |s: u64, n: u64| s + n <= SECTORS;
            match o {
                Op::Write(s, n, seed) => {
                    let data = pattern(n as usize * 512, seed);
                    let st = disk.write(s, &data);
                    if fits(s, u64::from(n)) {
                        prop_assert_eq!(st, blk::S_OK);
                        oracle[s as usize * 512..][..data.len()].copy_from_slice(&data);
                    } else {
                        prop_assert_eq!(st, blk::S_IOERR);
                    }
                }
                Op::Read(s, n) => {
                    let (st, data) = disk.read(s, n as usize);
                    if fits(s, u64::from(n)) {
                        prop_assert_eq!(st, blk::S_OK);
                        prop_assert_eq!(&data[..], &oracle[s as usize * 512..][..n as usize * 512]);
                    } else {
                        prop_assert_eq!(st, blk::S_IOERR);
                    }
                }
                Op::Flush => prop_assert_eq!(disk.run(Req { kind: blk::T_FLUSH, sector: 0, out: vec![], in_len: 0 }).0, blk::S_OK),
                Op::Discard(s, n) => {
                    let st = disk.ranged(blk::T_DISCARD, s, u32::from(n), 0);
                    if !discard {
                        prop_assert_eq!(st, blk::S_UNSUPP);
                    } else if fits(s, u64::from(n)) {
                        prop_assert_eq!(st, blk::S_OK);
                        oracle[s as usize * 512..][..n as usize * 512].fill(0);
                    } else {
                        prop_assert_eq!(st, blk::S_IOERR);
                    }
                }
                Op::Zero(s, n, unmap) => {
                    let st = disk.ranged(blk::T_WRITE_ZEROES, s, u32::from(n), u32::from(unmap));
                    if fits(s, u64::from(n)) {
                        prop_assert_eq!(st, blk::S_OK);
                        oracle[s as usize * 512..][..n as usize * 512].fill(0);
                    } else {
                        prop_assert_eq!(st, blk::S_IOERR);
                    }
                }
            }
        }
        let on_disk = std::fs::read(&disk.path).unwrap();
        prop_assert!(on_disk == oracle, "host file differs from the oracle");
    }
}

#[test]
fn read_only_image_refuses_modification() {
    let init = pattern(8192, 3);
    let mut disk = disk_with(&init, true, !0);
    assert_ne!(disk.d.features & blk::F_RO, 0, "VIRTIO_BLK_F_RO offered");
    assert_eq!(disk.write(0, &[9u8; 512]), blk::S_IOERR);
    assert_eq!(disk.ranged(blk::T_WRITE_ZEROES, 0, 1, 0), blk::S_IOERR);
    assert_eq!(disk.ranged(blk::T_DISCARD, 0, 1, 0), blk::S_IOERR);
    let (s, data) = disk.read(0, 1);
    assert_eq!(s, blk::S_OK);
    assert_eq!(data, init[..512]);
    assert_eq!(std::fs::read(&disk.path).unwrap(), init, "file untouched");
}

#[test]
fn one_interrupt_per_completion_batch() {
    let mut disk = disk_with(&vec![0u8; 8192], false, 0);
    disk.m.sink.take();
    let a = disk.submit(&Req {
        kind: blk::T_IN,
        sector: 0,
        out: vec![],
        in_len: 512,
    });
    let b = disk.submit(&Req {
        kind: blk::T_IN,
        sector: 1,
        out: vec![],
        in_len: 512,
    });
    let c = disk.submit(&Req {
        kind: blk::T_OUT,
        sector: 2,
        out: vec![1; 512],
        in_len: 0,
    });
    disk.d.kick(&mut disk.m, 0);
    let ids: Vec<_> = std::iter::from_fn(|| disk.d.queues[0].pop_used(&disk.m.mem))
        .map(|(id, _)| id as u16)
        .collect();
    assert_eq!(ids, vec![a.0, b.0, c.0]);
    let irqs = disk.m.sink.take();
    assert_eq!(
        irqs,
        vec![Irq::Msi {
            addr: MSI_ADDR,
            data: 0x31
        }],
        "queue 0 uses vector 1, one message"
    );
    disk.d.kick(&mut disk.m, 0);
    assert!(
        disk.m.sink.take().is_empty(),
        "a kick with nothing new sends nothing"
    );
}

#[test]
fn avail_no_interrupt_flag_is_honoured_without_event_idx() {
    let mut disk = disk_with(&vec![0u8; 8192], false, 0);
    disk.m.sink.take();
    disk.m
        .mem
        .write_obj(1u16, GuestAddress(disk.d.queues[0].avail))
        .unwrap();
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    assert!(
        disk.m.sink.take().is_empty(),
        "VRING_AVAIL_F_NO_INTERRUPT set"
    );
    disk.m
        .mem
        .write_obj(0u16, GuestAddress(disk.d.queues[0].avail))
        .unwrap();
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    assert_eq!(disk.m.sink.msi_data(), vec![0x31]);
}

#[test]
fn event_idx_suppresses_interrupts_until_used_event() {
    let mut disk = disk_with(&vec![0u8; 8192], false, blk::F_FLUSH | (1 << 29));
    assert_ne!(disk.d.features & (1 << 29), 0);
    disk.m.sink.take();
    // Ask for an interrupt only once used.idx passes 1 (after the 2nd completion).
    disk.d.queues[0].set_used_event(&disk.m.mem, 1);
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    assert!(disk.m.sink.take().is_empty());
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    assert_eq!(disk.m.sink.msi_data(), vec![0x31]);
}

#[test]
fn intx_fallback_without_msix() {
    let dir = TempDir::new();
    let path = dir.file("d.img", &[0u8; 4096]);
    let mut m = Machine::new();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(DiskImage::open(&path, false).unwrap(), "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    );
    let slot = m.add(Box::new(dev));
    assert_eq!(m.cfg_read(slot, 0x3c, 1), 10, "interrupt line");
    assert_eq!(m.cfg_read(slot, 0x3d, 1), 1, "INTA#");
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, 0, false, 0);
    let mut disk = Disk {
        m,
        d,
        _dir: dir,
        path,
    };
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    assert_eq!(
        disk.m.sink.take(),
        vec![Irq::Line {
            irq: 10,
            level: true
        }]
    );
    let isr = disk.m.mmio_read(disk.d.layout.isr, 1);
    assert_eq!(isr, 1, "queue interrupt bit");
    assert_eq!(
        disk.m.sink.take(),
        vec![Irq::Line {
            irq: 10,
            level: false
        }],
        "ISR read lowers the line"
    );
    assert_eq!(disk.m.mmio_read(disk.d.layout.isr, 1), 0, "read clears");
}

/// INTx# as PCI sees it: the status register's Interrupt Status bit follows
/// the ISR, the command register's Interrupt Disable bit holds the line low
/// without losing the pending interrupt, and the ISR read ends both.
#[test]
fn intx_status_bit_and_interrupt_disable() {
    let dir = TempDir::new();
    let path = dir.file("d.img", &[0u8; 4096]);
    let mut m = Machine::new();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(DiskImage::open(&path, false).unwrap(), "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(17),
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, 0, false, 0);
    const STATUS_INT: u32 = 1 << 3;
    const CMD_INTX_DISABLE: u32 = 1 << 10;
    assert_eq!(m.cfg_read(slot, 0x06, 2) & STATUS_INT, 0, "nothing pending");
    let mut disk = Disk {
        m,
        d,
        _dir: dir,
        path,
    };
    disk.run(Req {
        kind: blk::T_FLUSH,
        sector: 0,
        out: vec![],
        in_len: 0,
    });
    let line = |level| Irq::Line { irq: 17, level };
    assert_eq!(disk.m.sink.take(), vec![line(true)]);
    assert_ne!(
        disk.m.cfg_read(slot, 0x06, 2) & STATUS_INT,
        0,
        "INTx pending"
    );
    let cmd = disk.m.cfg_read(slot, 0x04, 2);
    disk.m.cfg_write(slot, 0x04, 2, cmd | CMD_INTX_DISABLE);
    assert_eq!(disk.m.sink.take(), vec![line(false)], "disabled: line low");
    assert_ne!(
        disk.m.cfg_read(slot, 0x06, 2) & STATUS_INT,
        0,
        "still pending while disabled"
    );
    disk.m.cfg_write(slot, 0x04, 2, cmd);
    assert_eq!(
        disk.m.sink.take(),
        vec![line(true)],
        "enabled again: line up"
    );
    assert_eq!(disk.m.mmio_read(disk.d.layout.isr, 1), 1);
    assert_eq!(disk.m.sink.take(), vec![line(false)], "ISR read lowers it");
    assert_eq!(
        disk.m.cfg_read(slot, 0x06, 2) & STATUS_INT,
        0,
        "and clears the status bit"
    );
}

#[test]
fn reset_returns_device_to_initial_state() {
    let mut disk = disk_with(&vec![0u8; 4096], false, !0);
    disk.d.set_status(&mut disk.m, 0);
    assert_eq!(disk.d.status(&mut disk.m), 0);
    disk.d.common_write(&mut disk.m, 22, 2, 0);
    assert_eq!(
        disk.d.common_read(&mut disk.m, 28, 2),
        0,
        "queue disabled by reset"
    );
    assert_eq!(
        disk.d.common_read(&mut disk.m, 26, 2),
        0xffff,
        "vector cleared"
    );
    // A kick after reset does nothing (no DRIVER_OK).
    disk.d.kick(&mut disk.m, 0);
    assert!(disk.d.queues[0].pop_used(&disk.m.mem).is_none());
    // And the device comes back after a fresh init.
    disk.d.init(&mut disk.m, !0, true, 0);
    assert_eq!(disk.read(0, 1).0, blk::S_OK);
}

#[test]
fn features_without_version_1_are_refused() {
    let mut disk = disk_with(&vec![0u8; 4096], false, !0);
    let m = &mut disk.m;
    disk.d.set_status(m, 0);
    disk.d.set_status(m, ACK | DRIVER);
    disk.d.common_write(m, 8, 4, 1);
    disk.d.common_write(m, 12, 4, 0);
    disk.d.set_status(m, ACK | DRIVER | FEATURES_OK);
    assert_eq!(disk.d.status(m) & FEATURES_OK, 0);
}

#[test]
fn ioeventfd_path_kicks_like_the_doorbell() {
    let mut disk = disk_with(&vec![0u8; 8192], false, 0);
    let regions = disk.m.root.lock().unwrap().notify_regions();
    assert_eq!(regions.len(), 1);
    let r = regions[0];
    assert_eq!(
        (r.addr, r.len, r.slot, r.queue),
        (disk.d.layout.notify, 2, disk.d.slot, 0)
    );
    let (head, _, status) = disk.submit(&Req {
        kind: blk::T_GET_ID,
        sector: 0,
        out: vec![],
        in_len: 20,
    });
    disk.m.root.lock().unwrap().queue_notify(r.slot, r.queue);
    assert_eq!(
        disk.d.queues[0].pop_used(&disk.m.mem).map(|u| u.0),
        Some(u32::from(head))
    );
    assert_eq!(
        disk.m.mem.read_obj::<u8>(GuestAddress(status)).unwrap(),
        blk::S_OK
    );
}
