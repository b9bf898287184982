//! Snapshot of the boundary trace: device discovery and one block read, run
//! through the daemon's vCPU loop against the daemon's virtio-blk.

mod common;

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::guest::GuestEnd;
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::vm::GuestOutcome;
use common::*;

#[test]
fn discovery_and_one_block_read() {
    let disk = temp_disk(64);
    let m = machine();
    m.add_block(open_image(&disk, false), "cobd0", None)
        .unwrap();
    let mut heap = m.guest_heap();
    let want = disk.contents[3 * 512..4 * 512].to_vec();
    let vcpu = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1042)?;
                let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
                cpu.note(format!("capacity {} sectors", d.capacity));
                let r = d.submit(
                    cpu,
                    &[BlkOp::Read {
                        sector: 3,
                        sectors: 1,
                    }],
                )?;
                ensure(r[0].status == 0, format!("status {}", r[0].status))?;
                ensure(r[0].data == want, "sector 3 differs from the image")?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    let ev = run_daemon_loop(&m, vcpu);
    assert_eq!(ev, MachineEvent::Poweroff, "{:?}", m.vm.outcome(0));
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
    insta::assert_snapshot!(m.vm.trace().render());
}

/// The guest moves the device's BAR (as Linux does when it reassigns
/// resources): the device answers at the new address only.
#[test]
fn moved_bar_decodes_at_the_new_address() {
    use colinux_sim::guest_virtio::pci;
    let disk = temp_disk(8);
    let m = machine();
    m.add_block(open_image(&disk, false), "cobd0", None)
        .unwrap();
    let mut heap = m.guest_heap();
    let want = disk.contents[..512].to_vec();
    let vcpu = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let mut f = find(cpu, 0x1042)?;
                let old = f.bars[0].map(|b| b.addr).unwrap_or(0);
                let new = old + 0x10_0000;
                pci::move_bar(cpu, &mut f, 0, new)?;
                let rescanned = find(cpu, 0x1042)?;
                ensure(
                    rescanned.bars[0].map(|b| b.addr) == Some(new),
                    "BAR did not move",
                )?;
                let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
                ensure(d.dev.common == new, "common cfg not in the moved BAR")?;
                let r = d.submit(
                    cpu,
                    &[BlkOp::Read {
                        sector: 0,
                        sectors: 1,
                    }],
                )?;
                ensure(r[0].status == 0 && r[0].data == want, "read after the move")?;
                let stale = cpu.mmio_read(old + 0x14, 1)?;
                ensure(
                    stale == 0xff,
                    format!("old address still decodes: {stale:#x}"),
                )?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    run_to_poweroff(&m, vcpu);
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
}
