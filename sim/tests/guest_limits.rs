//! A guest that cannot hurt the daemon (issue 11): guest actions repeated at
//! will must not grow the daemon's resources, and a slow device must not stall
//! the others.

use std::sync::Arc;

use colinux_daemon::vmm::doorbells::{ConfigPorts, Doorbells};
use colinux_devices::bus::BusDevice;
use colinux_devices::pci::PciConfigIo;
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
    let vm = match colinux_driver::kvm::KvmHypervisor::new().and_then(|hv| hv.create_vm()) {
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
