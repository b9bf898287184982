//! A guest that cannot hurt the daemon (issue 11): guest actions repeated at
//! will must not grow the daemon's resources, and a slow device must not stall
//! the others.

mod common;

use std::sync::Arc;

use colinux_daemon::vmm::doorbells::{ConfigPorts, Doorbells};
use colinux_devices::bus::BusDevice;
use colinux_devices::pci::PciConfigIo;
use colinux_driver::hypervisor::kvm::KvmHypervisor;
use colinux_driver::hypervisor::{Hypervisor, Vm};
use colinux_sim::faulty_disk::FaultyDisk;
use colinux_sim::machine::SimMachine;
use colinux_sim::vm::SimConfig;

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Writes `value` (`len` bytes) to configuration register `reg` of `slot`
/// through the ports, as `setpci` does.
fn cfg_write(ports: &mut ConfigPorts, slot: u8, reg: u8, len: usize, value: u32) {
    let addr = 0x8000_0000u32 | (u32::from(slot) << 11) | u32::from(reg & 0xfc);
    ports.write(0, &addr.to_le_bytes());
    ports.write(4 + u64::from(reg & 3), &value.to_le_bytes()[..len]);
}

fn cfg_read(ports: &mut ConfigPorts, slot: u8, reg: u8) -> u32 {
    let addr = 0x8000_0000u32 | (u32::from(slot) << 11) | u32::from(reg & 0xfc);
    ports.write(0, &addr.to_le_bytes());
    let mut b = [0u8; 4];
    ports.read(4, &mut b);
    u32::from_le_bytes(b)
}

/// Loops `setpci`-style writes of the command register and BAR 0 and checks
/// that the descriptor count stays flat and the doorbells stay registered.
fn config_writes_do_not_leak(m: &SimMachine, vm: Arc<dyn Vm>, rounds: u32) {
    let (disk, _h) = FaultyDisk::new(vec![0; 1 << 20], false);
    let slot = m.add_block(disk, "cobd0", None).unwrap();
    let doorbells = Arc::new(Doorbells::new(vm, m.pci.clone()));
    let mut ports = ConfigPorts::new(PciConfigIo::new(m.pci.clone()), doorbells.clone());
    doorbells.enable();
    cfg_write(&mut ports, slot, 4, 2, 0x6); // memory + bus master
    assert_eq!(doorbells.registered(), 1, "the request queue's doorbell");
    let bar0 = cfg_read(&mut ports, slot, 0x10) & !0xf;
    // Warm up once so lazily opened descriptors are counted in the baseline.
    cfg_write(&mut ports, slot, 4, 2, 0);
    cfg_write(&mut ports, slot, 4, 2, 0x6);
    let before = open_fds();
    for i in 0..rounds {
        // Memory decoding off and on again: the doorbells go and come back.
        cfg_write(&mut ports, slot, 4, 2, 0);
        cfg_write(&mut ports, slot, 4, 2, 0x6);
        // Rewrite BAR 0 in place, and every so often move it and back.
        cfg_write(&mut ports, slot, 0x10, 4, bar0);
        if i % 16 == 0 {
            cfg_write(&mut ports, slot, 0x10, 4, bar0 + 0x10_0000);
            cfg_write(&mut ports, slot, 0x10, 4, bar0);
        }
    }
    let after = open_fds();
    assert!(
        after <= before + 2,
        "{rounds} rounds of config writes grew the open descriptors from {before} to {after}"
    );
    assert_eq!(
        doorbells.registered(),
        1,
        "the doorbell is registered again"
    );
}

#[test]
fn config_writes_do_not_leak_descriptors_sim() {
    let m = SimMachine::new(SimConfig::default(), 16).unwrap();
    let vm: Arc<dyn Vm> = Arc::new(m.vm.clone());
    config_writes_do_not_leak(&m, vm, 3000);
}

#[test]
fn config_writes_do_not_leak_descriptors_kvm() {
    let vm = match KvmHypervisor::new().and_then(|hv| hv.create_vm()) {
        Ok(vm) => vm,
        Err(e) => {
            println!("skipped: no usable /dev/kvm here ({e})");
            return;
        }
    };
    let m = SimMachine::new(SimConfig::default(), 16).unwrap();
    // KVM (un)registers an ioeventfd slowly (an SRCU grace period each).
    config_writes_do_not_leak(&m, vm, 200);
}

mod stall {
    //! A stalled block request must not stall the rest of the machine: with
    //! the daemon's own bus wiring (`Machine::build_on`), a config access and
    //! another device's MMIO are served while a vCPU thread waits in a
    //! virtio-blk request whose backend stalls.

    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use crate::common::daemon_spec;
    use colinux_daemon::vmm::console::ConsoleOut;
    use colinux_daemon::vmm::machine::Machine;
    use colinux_devices::bus::Bus;
    use colinux_devices::virtio::blk::BlockDevice;
    use colinux_devices::virtio::pci::VirtioPciDevice;
    use colinux_sim::faulty_disk::{CallResult, DiskOp, FaultyDisk, FaultyDiskHandle};
    use colinux_sim::vm::{SimConfig, SimHypervisor};
    use vm_memory::{Bytes, GuestAddress};

    fn cfg_addr(slot: u8, reg: u8) -> [u8; 4] {
        (0x8000_0000u32 | (u32::from(slot) << 11) | u32::from(reg)).to_le_bytes()
    }

    fn cfg_read(pio: &Bus, slot: u8, reg: u8) -> u32 {
        pio.write(0xcf8, &cfg_addr(slot, reg));
        let mut b = [0u8; 4];
        pio.read(0xcfc, &mut b);
        u32::from_le_bytes(b)
    }

    fn cfg_write(pio: &Bus, slot: u8, reg: u8, v: u32) {
        pio.write(0xcf8, &cfg_addr(slot, reg));
        pio.write(0xcfc, &v.to_le_bytes());
    }

    fn bar0(pio: &Bus, slot: u8) -> u64 {
        cfg_write(pio, slot, 4, 0x6);
        u64::from(cfg_read(pio, slot, 0x14)) << 32 | u64::from(cfg_read(pio, slot, 0x10) & !0xf)
    }

    /// Brings up queue 0 of the virtio-blk at `bar` with one read request of
    /// sector 0 queued (rings at `base` in guest RAM); returns the doorbell.
    fn blk_with_one_read(m: &Machine, bar: u64, base: u64) -> u64 {
        let w = |off: u64, v: u64, len: usize| {
            assert!(m.mmio.write(bar + off, &v.to_le_bytes()[..len]));
        };
        w(20, 0, 1);
        w(20, 1, 1);
        w(20, 3, 1);
        w(8, 1, 4);
        w(12, 1, 4); // VERSION_1
        w(20, 0xb, 1);
        w(22, 0, 2);
        w(24, 16, 2);
        let (desc, avail, used) = (base, base + 0x1000, base + 0x2000);
        for (off, a) in [(32, desc), (40, avail), (48, used)] {
            w(off, a & 0xffff_ffff, 4);
            w(off + 4, a >> 32, 4);
        }
        w(28, 1, 2);
        w(20, 0xf, 1);
        let mem = &m.memory;
        let (hdr, data, status) = (base + 0x3000, base + 0x4000, base + 0x5000);
        mem.write_slice(&[0u8; 16], GuestAddress(hdr)).unwrap();
        for (i, (addr, len, flags)) in [(hdr, 16u32, 1u16), (data, 512, 3), (status, 1, 2)]
            .into_iter()
            .enumerate()
        {
            let d = desc + 16 * i as u64;
            mem.write_obj(addr, GuestAddress(d)).unwrap();
            mem.write_obj(len, GuestAddress(d + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
            mem.write_obj(i as u16 + 1, GuestAddress(d + 14)).unwrap();
        }
        mem.write_obj(0u16, GuestAddress(avail + 4)).unwrap();
        mem.write_obj(1u16, GuestAddress(avail + 2)).unwrap();
        bar + 0x3000
    }

    /// The daemon's machine (cobd0 on a plain file, slot 1) plus a second
    /// virtio-blk, "cobd9", whose backend stalls its first read for 3 s;
    /// returns the machine, the stall handle, cobd9's slot and the temp dir
    /// that must outlive the machine.
    fn machine_with_a_slow_disk() -> (Machine, FaultyDiskHandle, u8, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("cobd0.img");
        std::fs::write(&disk, vec![0u8; 64 * 512]).unwrap();
        let spec = daemon_spec(
            dir.path(),
            &format!("cobd0={} mem=64", disk.display()),
            "console=ttyS0",
            1,
        );
        let hv = SimHypervisor::new(SimConfig::default());
        let (tx, _rx) = mpsc::channel();
        let m = Machine::build_on(&hv, &spec, tx, ConsoleOut::default()).unwrap();
        // A second disk whose backend stalls its first read for 3 s.
        let (slow, handle) = FaultyDisk::new(vec![0x5a; 64 * 512], false);
        handle.stall_next(DiskOp::Read, 1, Duration::from_secs(3));
        let sink = Arc::new(colinux_sim::vm::SimVm::new(SimConfig::default()));
        let slot = m
            .pci
            .lock()
            .unwrap()
            .add_device(Box::new(VirtioPciDevice::new(
                BlockDevice::new(slow, "cobd9"),
                m.memory.clone(),
                sink,
                None,
            )))
            .unwrap();
        (m, handle, slot, dir)
    }

    #[test]
    fn a_stalled_blk_request_does_not_stall_config_or_other_devices() {
        let (m, handle, slot, _dir) = machine_with_a_slow_disk();
        let fast_bar = bar0(&m.pio, 1);
        let doorbell = blk_with_one_read(&m, bar0(&m.pio, slot), 0x300_0000);

        // vCPU A rings the slow disk's doorbell and waits in the request.
        let mmio = m.mmio.clone();
        let a = std::thread::spawn(move || mmio.write(doorbell, &0u16.to_le_bytes()));
        let t = Instant::now();
        while !handle
            .calls()
            .iter()
            .any(|c| matches!(c.result, CallResult::Stalled(_)))
        {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the read never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // vCPU B meanwhile reads the host bridge's ID and cobd0's queue count.
        let (pio, mmio) = (m.pio.clone(), m.mmio.clone());
        let (done, served) = mpsc::channel();
        std::thread::spawn(move || {
            let id = cfg_read(&pio, 0, 0);
            let mut b = [0u8; 2];
            mmio.read(fast_bar + 18, &mut b);
            let _ = done.send((id, u16::from_le_bytes(b)));
        });
        let got = served.recv_timeout(Duration::from_secs(1));
        a.join().unwrap();
        let (id, queues) = got.expect("config and MMIO access waited for the stalled blk request");
        assert_ne!(id, 0xffff_ffff, "host bridge present");
        assert_eq!(queues, 1, "cobd0's num_queues");
    }

    /// With doorbells as ioeventfds, each device is served on a thread of its
    /// own: while the slow disk's thread waits in its request, a doorbell of
    /// another device is served at once.
    #[test]
    fn a_stalled_blk_request_does_not_delay_another_devices_doorbell() {
        let (m, handle, slot, _dir) = machine_with_a_slow_disk();
        blk_with_one_read(&m, bar0(&m.pio, 1), 0x200_0000);
        blk_with_one_read(&m, bar0(&m.pio, slot), 0x300_0000);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = colinux_daemon::vmm::devices::spawn_device_poller(
            m.pci.clone(),
            Some(m.doorbells.clone()),
            stop.clone(),
        );
        let bell = |s: u8| {
            let bells = m.doorbells.poll_set();
            let (fd, _, _) = bells.iter().find(|b| b.1 == s && b.2 == 0).unwrap();
            fd.write(1).unwrap();
        };
        bell(slot);
        let t = Instant::now();
        while !handle
            .calls()
            .iter()
            .any(|c| matches!(c.result, CallResult::Stalled(_)))
        {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the read never started"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        bell(1);
        let t = Instant::now();
        let used_idx = |base: u64| {
            m.memory
                .read_obj::<u16>(GuestAddress(base + 0x2002))
                .unwrap()
        };
        while used_idx(0x200_0000) == 0 && t.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let served = used_idx(0x200_0000);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        poller.join().unwrap();
        assert_eq!(served, 1, "cobd0's request waited for the stalled one");
        assert_eq!(used_idx(0x300_0000), 1, "the stalled request completed");
    }
}
