//! Snapshot of how injected faults look at the boundary: an interrupted run
//! and a spurious exit retried by the daemon's loop, a refused entry fixed by
//! the monitor, and a lost interrupt survived by polling.

mod common;

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_driver::hypervisor::{Vcpu, VmExit};
use colinux_sim::fault::{Fault, FaultPlan};
use colinux_sim::guest::GuestEnd;
use common::*;

#[test]
fn retried_exits_in_the_daemon_loop() {
    let m = machine();
    m.vm.set_faults(
        FaultPlan::new()
            .at(0, 2, Fault::Interrupted)
            .at(0, 4, Fault::SpuriousHalt)
            .at(0, 5, Fault::Interrupted),
    );
    let v = m
        .boot_vcpu(
            0,
            Box::new(|cpu| {
                cpu.outb(0x80, 1)?;
                let v = cpu.inb(0x80)?;
                cpu.outb(0x80, v)?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    assert_eq!(run_daemon_loop(&m, v), MachineEvent::Poweroff);
    insta::assert_snapshot!(m.vm.trace().render());
}

#[test]
fn refused_entry_then_fixed_by_the_monitor() {
    let m = machine();
    let mut v = m
        .boot_vcpu(
            0,
            Box::new(|cpu| {
                cpu.outw(0x80, 0x1234)?;
                cpu.mmio_write(0xd000_0000, 4, 0xfeed)?;
                Ok(GuestEnd::Reset)
            }),
        )
        .unwrap();
    assert!(matches!(v.run().unwrap(), VmExit::IoOut { port: 0x80, .. }));
    let good = v.get_sregs().unwrap();
    let mut bad = good;
    bad.efer = 0;
    v.set_sregs(&bad).unwrap();
    assert!(matches!(v.run().unwrap(), VmExit::FailEntry { .. }));
    v.set_sregs(&good).unwrap();
    assert!(matches!(
        v.run().unwrap(),
        VmExit::MmioWrite {
            addr: 0xd000_0000,
            ..
        }
    ));
    assert!(matches!(v.run().unwrap(), VmExit::Reset));
    insta::assert_snapshot!(m.vm.trace().render());
}
