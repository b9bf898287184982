//! PCI as Linux sees it with no ACPI: conf1 detection, bus scan, BAR sizing
//! and moving, memory decoding, MSI-X and the virtio PCI-cfg window.

mod common;

use colinux_devices::block::DiskImage;
use colinux_devices::bus::BusDevice;
use colinux_devices::pci::{MmioWindow, PciError, PciRoot};
use colinux_devices::virtio::blk::BlockDevice;
use colinux_devices::virtio::pci::{VirtioPciDevice, BAR_SIZE};
use common::*;

fn machine_with_disk() -> (Machine, u8, TempDir) {
    let dir = TempDir::new();
    let path = dir.file("d.img", &[0u8; 8192]);
    let m = Machine::new();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(DiskImage::open(&path, false).unwrap(), "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    );
    let slot = m.add(Box::new(dev));
    (m, slot, dir)
}

#[test]
fn linux_conf1_detection_sequence() {
    let (mut m, _, _dir) = machine_with_disk();
    // pci_check_type1(): outb(0x01, 0xCFB); tmp = inl(0xCF8); outl(0x80000000, 0xCF8); inl(0xCF8)
    m.cfg.write(3, &[0x01]);
    let mut b = [0u8; 4];
    m.cfg.read(0, &mut b);
    let tmp = u32::from_le_bytes(b);
    m.cfg.write(0, &0x8000_0000u32.to_le_bytes());
    m.cfg.read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
    m.cfg.write(0, &tmp.to_le_bytes());
    // pci_sanity_check(): a host bridge on bus 0.
    assert_eq!(m.cfg_read(0, 0x0a, 2), 0x0600, "host bridge class");
    assert_eq!(m.cfg_read(0, 0x0e, 1) & 0x7f, 0, "header type 0");
}

#[test]
fn bus_scan_finds_exactly_the_devices() {
    let (mut m, slot, _dir) = machine_with_disk();
    assert_eq!(slot, 1);
    let mut found = Vec::new();
    for s in 0..32u8 {
        let id = m.cfg_read(s, 0, 4);
        if id != 0xffff_ffff {
            found.push((s, id));
        }
        // Functions 1..7 do not exist.
        m.cfg.write(
            0,
            &(0x8000_0000u32 | u32::from(s) << 11 | 1 << 8).to_le_bytes(),
        );
        let mut b = [0u8; 4];
        m.cfg.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0xffff_ffff);
    }
    assert_eq!(found, vec![(0, 0x0d57_8086), (1, 0x1042_1af4)]);
    // Bus 1 does not exist; the enable bit is required.
    m.cfg.write(0, &(0x8001_0000u32).to_le_bytes());
    let mut b = [0u8; 4];
    m.cfg.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    m.cfg.write(0, &0u32.to_le_bytes());
    m.cfg.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    // Sub-word reads through 0xCFE.
    assert_eq!(m.cfg_read(1, 2, 2), 0x1042);
    assert_eq!(m.cfg_read(1, 0x2c, 2), 0x1af4, "subsystem vendor");
    assert_eq!(m.cfg_read(1, 8, 1), 1, "modern virtio has revision >= 1");
}

#[test]
fn bar_sizing_through_ports_and_firmware_placement() {
    let (mut m, slot, _dir) = machine_with_disk();
    let lo = m.cfg_read(slot, 0x10, 4);
    let hi = m.cfg_read(slot, 0x14, 4);
    let placed = u64::from(hi) << 32 | u64::from(lo & !0xf);
    assert!(placed >= WINDOW.base && placed + BAR_SIZE <= WINDOW.base + WINDOW.size);
    assert_eq!(placed % BAR_SIZE, 0, "naturally aligned");
    // Linux __pci_read_base: disable decode, write ones, read, restore.
    m.cfg_write(slot, 0x10, 4, 0xffff_ffff);
    m.cfg_write(slot, 0x14, 4, 0xffff_ffff);
    let size_lo = m.cfg_read(slot, 0x10, 4);
    let size_hi = m.cfg_read(slot, 0x14, 4);
    let mask = u64::from(size_hi) << 32 | u64::from(size_lo & !0xf);
    assert_eq!(size_lo & 0xf, 0b0100, "64-bit, non-prefetchable memory");
    assert_eq!(!mask + 1, BAR_SIZE);
    m.cfg_write(slot, 0x10, 4, lo);
    m.cfg_write(slot, 0x14, 4, hi);
    assert_eq!(m.cfg_read(slot, 0x10, 4), lo);
    for bar in 2..6u8 {
        m.cfg_write(slot, 0x10 + 4 * bar, 4, 0xffff_ffff);
        assert_eq!(
            m.cfg_read(slot, 0x10 + 4 * bar, 4),
            0,
            "unimplemented BAR {bar}"
        );
    }
    m.cfg_write(slot, 0x30, 4, 0xffff_f800);
    assert_eq!(m.cfg_read(slot, 0x30, 4), 0, "no expansion ROM");
}

#[test]
fn guest_moves_the_bar_and_decoding_follows() {
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    let old = d.layout.bar0;
    assert_eq!(
        m.mmio_read(d.layout.common + 18, 2),
        0xffff,
        "decoding off until the command bit is set"
    );
    d.enable_pci(&mut m, false);
    assert_eq!(m.mmio_read(d.layout.common + 18, 2), 1, "num_queues");
    let gen = m.root.lock().unwrap().layout_generation();
    let regions = m.root.lock().unwrap().notify_regions();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].addr, d.layout.notify);
    let new = WINDOW.base + 0x80_0000;
    m.cfg_write(slot, 0x10, 4, (new as u32) | 0b100);
    m.cfg_write(slot, 0x14, 4, (new >> 32) as u32);
    assert_ne!(m.root.lock().unwrap().layout_generation(), gen);
    assert_eq!(m.mmio_read(old + 18, 2), 0xffff, "old address is dead");
    assert_eq!(m.mmio_read(new + 18, 2), 1, "new address answers");
    assert_eq!(
        m.root.lock().unwrap().notify_regions()[0].addr,
        new + (d.layout.notify - old)
    );
    // Above 4 GiB, outside the window: reachable through PciRoot::mmio_read.
    let high = 0x1_2000_0000u64;
    m.cfg_write(slot, 0x10, 4, (high as u32) | 0b100);
    m.cfg_write(slot, 0x14, 4, (high >> 32) as u32);
    assert_eq!(m.mmio_read(high + 18, 2), 1);
    // Memory decoding off: nothing answers.
    m.cfg_write(slot, 4, 2, 0);
    assert_eq!(m.mmio_read(high + 18, 2), 0xffff);
}

/// The 64-bit window the DSDT advertises is a second [`PciMmio`] on the bus
/// (`PciMmio::at`): a 64-bit BAR the guest moves there answers through it.
#[test]
fn bar_moved_into_the_64bit_window_decodes_through_its_bus_device() {
    use colinux_devices::pci::PciMmio;
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    d.enable_pci(&mut m, false);
    let window64 = 0x10_0000_0000u64;
    let mut high = PciMmio::at(m.root.clone(), window64);
    let bar = window64 + 0x20_0000;
    m.cfg_write(slot, 0x10, 4, (bar as u32) | 0b100);
    m.cfg_write(slot, 0x14, 4, (bar >> 32) as u32);
    let common = d.layout.common - d.layout.bar0;
    let mut b = [0u8; 2];
    high.read(bar - window64 + common + 18, &mut b);
    assert_eq!(
        u16::from_le_bytes(b),
        1,
        "num_queues through the 64-bit window"
    );
    high.write(bar - window64 + common + 22, &0u16.to_le_bytes());
    high.read(bar - window64 + common + 24, &mut b);
    assert_ne!(u16::from_le_bytes(b), 0, "queue 0 size");
}

#[test]
fn access_straddling_the_bar_end_is_not_dispatched() {
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    d.enable_pci(&mut m, false);
    let mut b = [0u8; 8];
    assert!(!m
        .root
        .lock()
        .unwrap()
        .mmio_read(d.layout.bar0 + BAR_SIZE - 4, &mut b));
    assert!(m
        .root
        .lock()
        .unwrap()
        .mmio_read(d.layout.bar0 + BAR_SIZE - 8, &mut b));
}

#[test]
fn msix_capability_and_table() {
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    assert_eq!(d.layout.msix_vectors, 2, "one queue + config");
    d.enable_pci(&mut m, false);
    // All vectors start masked.
    for v in 0..2 {
        assert_eq!(m.mmio_read(d.layout.msix_table + 16 * v + 12, 4), 1);
    }
    // Only the enable and function-mask bits of message control are writable.
    let cap = d.layout.msix_cap;
    m.cfg_write(slot, cap + 2, 2, 0xffff);
    assert_eq!(m.cfg_read(slot, cap + 2, 2), 0xc001);
    m.cfg_write(slot, cap + 2, 2, 0);
    assert_eq!(m.cfg_read(slot, cap + 2, 2), 0x0001);
    // Reserved vector-control bits read as zero.
    m.mmio_write(d.layout.msix_table + 12, 4, 0xffff_fffe);
    assert_eq!(m.mmio_read(d.layout.msix_table + 12, 4), 0);
}

#[test]
fn virtio_pci_cfg_window_reaches_bar0() {
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    let c = d.layout.pci_cfg_cap;
    assert_eq!(m.cfg_read(slot, c + 2, 1), 20, "cap_len");
    // Read num_queues (common cfg + 18) through the window.
    m.cfg_write(slot, c + 4, 1, 0);
    m.cfg_write(slot, c + 8, 4, 18);
    m.cfg_write(slot, c + 12, 4, 2);
    assert_eq!(m.cfg_read(slot, c + 16, 4) & 0xffff, 1);
    // Write device_status = ACK through the window.
    m.cfg_write(slot, c + 8, 4, 20);
    m.cfg_write(slot, c + 12, 4, 1);
    m.cfg_write(slot, c + 16, 1, u32::from(ACK));
    d.enable_pci(&mut m, false);
    assert_eq!(d.status(&mut m), ACK);
}

#[test]
fn queue_config_is_locked_once_enabled_and_bad_vectors_are_refused() {
    let (mut m, slot, _dir) = machine_with_disk();
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, !0, true, 64);
    d.common_write(&mut m, 22, 2, 0);
    d.common_write(&mut m, 24, 2, 16);
    assert_eq!(d.common_read(&mut m, 24, 2), 64, "size locked after enable");
    d.common_write(&mut m, 32, 4, 0x9000);
    assert_eq!(
        d.common_read(&mut m, 32, 8),
        d.queues[0].desc,
        "address locked after enable"
    );
    d.common_write(&mut m, 26, 2, 7);
    assert_eq!(
        d.common_read(&mut m, 26, 2),
        0xffff,
        "vector beyond the table reads NO_VECTOR"
    );
    d.common_write(&mut m, 22, 2, 5);
    assert_eq!(d.common_read(&mut m, 24, 2), 0, "absent queue has size 0");
    d.common_write(&mut m, 0, 4, 7);
    assert_eq!(d.common_read(&mut m, 4, 4), 0, "feature word 7 is empty");
}

#[test]
fn queue_with_rings_outside_ram_sets_needs_reset() {
    let (mut m, slot, _dir) = machine_with_disk();
    let d = VirtioDriver::probe(&mut m, slot);
    d.enable_pci(&mut m, true);
    d.set_status(&mut m, ACK | DRIVER);
    d.common_write(&mut m, 12, 4, 0);
    d.common_write(&mut m, 8, 4, 1);
    d.common_write(&mut m, 12, 4, 1);
    d.set_status(&mut m, ACK | DRIVER | FEATURES_OK);
    d.common_write(&mut m, 22, 2, 0);
    d.common_write(&mut m, 32, 4, 0x9000_0000); // in no RAM region
    d.common_write(&mut m, 28, 2, 1);
    d.set_status(&mut m, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(d.status(&mut m) & 0x40, 0x40, "DEVICE_NEEDS_RESET");
    d.kick(&mut m, 0);
    d.set_status(&mut m, 0);
    assert_eq!(d.status(&mut m), 0, "reset clears it");
}

#[test]
fn window_and_bus_exhaustion_are_errors() {
    let dir = TempDir::new();
    let mem = guest_memory();
    let sink = std::sync::Arc::new(RecordingSink::default());
    let mk = |i: usize| {
        let p = dir.file(&format!("{i}.img"), &[0u8; 512]);
        Box::new(VirtioPciDevice::new(
            BlockDevice::new(DiskImage::open(&p, false).unwrap(), "x"),
            mem.clone(),
            sink.clone(),
            None,
        ))
    };
    let small = PciRoot::new(MmioWindow {
        base: 0xc000_0000,
        size: BAR_SIZE,
    });
    small.add_device(mk(0)).unwrap();
    let e = small.add_device(mk(1)).unwrap_err();
    assert!(matches!(e, PciError::WindowFull { .. }));
    assert!(e.to_string().contains("virtio-blk x"), "{e}");
    let big = PciRoot::new(MmioWindow {
        base: 0xc000_0000,
        size: 0x1000_0000,
    });
    for i in 0..31 {
        big.add_device(mk(100 + i)).unwrap();
    }
    assert_eq!(big.add_device(mk(200)).unwrap_err(), PciError::BusFull);
}

#[test]
fn disk_and_nic_share_the_bus_without_overlap() {
    let (mut m, blk_slot, _dir) = machine_with_disk();
    let (backend, _state) = common::loopback::Loopback::new();
    let nic =
        colinux_devices::virtio::net::NetDevice::new(Box::new(backend), [0, 0xff, 1, 2, 3, 4]);
    let net_slot = m.add(Box::new(VirtioPciDevice::new(
        nic,
        m.mem.clone(),
        m.sink.clone(),
        None,
    )));
    assert_eq!(net_slot, 2);
    let mut a = VirtioDriver::probe(&mut m, blk_slot);
    let mut b = VirtioDriver::probe(&mut m, net_slot);
    assert!(a.layout.bar0 + BAR_SIZE <= b.layout.bar0 || b.layout.bar0 + BAR_SIZE <= a.layout.bar0);
    a.init(&mut m, !0, true, 0);
    b.init(&mut m, !0, true, 0);
    assert_eq!(a.common_read(&mut m, 18, 2), 1);
    assert_eq!(b.common_read(&mut m, 18, 2), 2);
    assert_eq!(b.layout.msix_vectors, 3, "rx, tx, config");
    let regions = m.root.lock().unwrap().notify_regions();
    let slots: Vec<_> = regions.iter().map(|r| (r.slot, r.queue)).collect();
    assert_eq!(slots, vec![(1, 0), (2, 0), (2, 1)]);
}
