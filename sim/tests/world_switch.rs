//! The world-switch model itself: state the monitor sets survives exits and
//! reaches the guest, inconsistent entry state is refused as hardware would
//! refuse it (and the daemon reports it), a refused entry loses nothing,
//! ioeventfds and irqfds short-circuit the monitor, and legacy INTx lines
//! reach the guest through the daemon's virtio transport.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_driver::hypervisor::{
    DataMatch, GsiRoute, IoEventAddress, SpecialRegisters, StandardRegisters, Vcpu, Vm, VmExit,
};
use colinux_sim::guest::{GuestEnd, GuestError};
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::trace::{Event, Interrupt};
use colinux_sim::vcpu::SimVcpu;
use colinux_sim::vm::GuestOutcome;
use colinux_sim::world::{merge_register, FAIL_ENTRY_INVALID_STATE};
use common::*;
use proptest::prelude::*;
use rstest::rstest;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// General-purpose registers an entry accepts: RIP in identity-mapped RAM, RSP
/// mapped, RFLAGS with bit 1 and no reserved bits.
fn regs() -> impl Strategy<Value = StandardRegisters> {
    (
        prop::array::uniform16(any::<u64>()),
        0x10_0000u64..0x20_0000,
        0x1000u64..0x4000_0000,
        prop::sample::subsequence(vec![0u64, 2, 4, 6, 7, 11], 0..6),
    )
        .prop_map(|(g, rip, rsp, flags)| StandardRegisters {
            rax: g[0],
            rbx: g[1],
            rcx: g[2],
            rdx: g[3],
            rsi: g[4],
            rdi: g[5],
            rbp: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            rsp,
            rip,
            rflags: 2 | flags.iter().fold(0, |a, b| a | (1 << b)),
        })
}

/// A vCPU in the driver's boot state running `in`/`out` on port 0x80, whose
/// program reports the registers it sees after each instruction.
fn probe_vcpu(
    m: &colinux_sim::machine::SimMachine,
    seen: Arc<Mutex<Vec<StandardRegisters>>>,
) -> SimVcpu {
    m.boot_vcpu(
        0,
        Box::new(move |cpu| {
            cpu.outb(0x80, 0x11)?;
            seen.lock().unwrap().push(*cpu.regs());
            cpu.inb(0x80)?;
            seen.lock().unwrap().push(*cpu.regs());
            Ok(GuestEnd::Poweroff)
        }),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn monitor_state_survives_exits_and_reaches_the_guest(r1 in regs(), r2 in regs(), value in any::<u8>()) {
        let m = machine();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut v = probe_vcpu(&m, seen.clone());
        let sregs: SpecialRegisters = v.get_sregs().unwrap();
        v.set_regs(&r1).unwrap();
        // Exit 1: `out 0x80, al` — the state is what was set, plus the
        // instruction's operands (AL, DX); RIP at the instruction.
        match v.run().unwrap() {
            VmExit::IoOut { port: 0x80, data } => prop_assert_eq!(data, &[0x11u8][..]),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        let mut want = r1;
        want.rax = merge_register(r1.rax, 0x11, 1);
        want.rdx = 0x80;
        prop_assert_eq!(v.get_regs().unwrap(), want);
        prop_assert_eq!(v.get_sregs().unwrap(), sregs);
        // The monitor replaces the registers; the guest resumes with them.
        v.set_regs(&r2).unwrap();
        match v.run().unwrap() {
            VmExit::IoIn { port: 0x80, data } => data[0] = value,
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        let mut want2 = r2;
        want2.rip = r2.rip + 1;
        want2.rdx = 0x80;
        prop_assert_eq!(v.get_regs().unwrap(), want2);
        match v.run().unwrap() {
            VmExit::Poweroff => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        let seen = seen.lock().unwrap().clone();
        prop_assert_eq!(seen.len(), 2);
        prop_assert_eq!(seen[0].rip, r2.rip + 1, "guest resumed at the monitor's RIP past the out");
        prop_assert_eq!(seen[0].rbx, r2.rbx);
        prop_assert_eq!(seen[0].r15, r2.r15);
        prop_assert_eq!(seen[1].rax, merge_register(r2.rax, u64::from(value), 1), "in al: the monitor's byte in AL");
        prop_assert_eq!(seen[1].rip, r2.rip + 2);
        // No entry was refused, and the trace marks the monitor's writes.
        let ev = m.vm.trace().events();
        let refused = ev.iter().any(|e| matches!(e, Event::EntryRefused { .. }));
        prop_assert!(!refused);
        let set = ev.iter().filter(|e| matches!(e, Event::Entry { monitor_set: true, .. })).count();
        prop_assert_eq!(set, 2);
    }
}

fn corrupt(name: &str, r: &mut StandardRegisters, s: &mut SpecialRegisters) {
    match name {
        "cr0.pg-needs-pe" => s.cr0 &= !1,
        "efer.lma" => s.efer &= !(1 << 10),
        "long-mode-needs-pae" => s.cr4 &= !(1 << 5),
        "cs.code" => s.cs.type_ = 3,
        "gdt.limit" => s.gdt.limit = 0x1e,
        "tr.busy-tss" => s.tr.type_ = 9,
        "rflags" => r.rflags = 0,
        "rip.mapped" => r.rip = 0x7fff_0000_0000,
        "gdt.ds" => s.ds.base = 0x1000,
        "cs64.l-and-d" => s.cs.db = 1,
        other => panic!("no corruption for {other}"),
    }
}

#[rstest]
#[case("cr0.pg-needs-pe")]
#[case("efer.lma")]
#[case("long-mode-needs-pae")]
#[case("cs.code")]
#[case("gdt.limit")]
#[case("tr.busy-tss")]
#[case("rflags")]
#[case("rip.mapped")]
#[case("gdt.ds")]
#[case("cs64.l-and-d")]
fn inconsistent_entry_state_is_refused_and_reported(#[case] rule: &str) {
    let m = machine();
    let v = m
        .boot_vcpu(0, Box::new(|_| Ok(GuestEnd::Poweroff)))
        .unwrap();
    let (mut r, mut s) = (v.get_regs().unwrap(), v.get_sregs().unwrap());
    corrupt(rule, &mut r, &mut s);
    v.set_regs(&r).unwrap();
    v.set_sregs(&s).unwrap();
    match run_daemon_loop(&m, v) {
        MachineEvent::Fatal { report, .. } => {
            assert!(
                report.contains("hardware refused to enter the guest (reason 0x80000021)"),
                "{report}"
            );
        }
        other => panic!("expected a refused entry, got {other:?}"),
    }
    let refused: Vec<Vec<String>> =
        m.vm.trace()
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::EntryRefused { rules, .. } => Some(rules),
                _ => None,
            })
            .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]
            .iter()
            .any(|x| x.starts_with(&format!("{rule}:"))),
        "{refused:?}"
    );
    assert_eq!(m.vm.outcome(0), None, "the guest never ran");
}

#[test]
fn refused_entry_keeps_the_pending_instruction() {
    let m = machine();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut v = probe_vcpu(&m, seen.clone());
    let good = v.get_sregs().unwrap();
    let rip = v.get_regs().unwrap().rip;
    assert!(matches!(v.run().unwrap(), VmExit::IoOut { port: 0x80, .. }));
    let mut bad = good;
    bad.cr0 &= !1;
    v.set_sregs(&bad).unwrap();
    match v.run().unwrap() {
        VmExit::FailEntry { reason } => assert_eq!(reason, FAIL_ENTRY_INVALID_STATE),
        other => panic!("{other:?}"),
    }
    v.set_sregs(&good).unwrap();
    match v.run().unwrap() {
        VmExit::IoIn { port: 0x80, data } => data[0] = 0x99,
        other => panic!("{other:?}"),
    }
    assert!(matches!(v.run().unwrap(), VmExit::Poweroff));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].rip, rip + 1, "the out completed exactly once");
    assert_eq!(seen[1].rax & 0xff, 0x99);
}

#[test]
fn ioeventfd_absorbs_the_doorbell_and_irqfd_raises_the_route() {
    let m = machine();
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let irq = EventFd::new(EFD_NONBLOCK).unwrap();
    m.vm.register_ioevent(
        &doorbell,
        IoEventAddress::Mmio(0xd000_0000),
        DataMatch::U16(3),
    )
    .unwrap();
    m.vm.set_gsi_routes(&[GsiRoute::Msi {
        gsi: 24,
        address: 0xfee0_0000,
        data: 0x61,
    }])
    .unwrap();
    m.vm.register_irqfd(&irq, 24).unwrap();
    let irq2 = irq.try_clone().unwrap();
    let mut v = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                // Matches: no exit. Wrong value: an ordinary MMIO exit.
                cpu.mmio_write(0xd000_0000, 2, 3)?;
                cpu.mmio_write(0xd000_0000, 2, 4)?;
                irq2.write(1)
                    .map_err(|e| GuestError::Device(e.to_string()))?;
                match cpu.wait_interrupt(Duration::from_secs(2))? {
                    Interrupt::Msi { data: 0x61, .. } => Ok(GuestEnd::Poweroff),
                    other => Err(GuestError::Device(format!("got {other:?}"))),
                }
            }),
        )
        .unwrap();
    match v.run().unwrap() {
        VmExit::MmioWrite { addr, data } => {
            assert_eq!(addr, 0xd000_0000);
            assert_eq!(data, &[4, 0]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        doorbell.read().unwrap(),
        1,
        "the matching write signalled the ioeventfd"
    );
    let end = loop {
        match v.run().unwrap() {
            VmExit::Interrupted => continue,
            other => break format!("{other:?}"),
        }
    };
    assert_eq!(end, "Poweroff", "{:?}", m.vm.outcome(0));
    let t = m.vm.trace().render();
    assert!(t.contains("ioeventfd addr=0xd0000000"), "{t}");
    assert!(t.contains("deliver vector=0x61"), "{t}");
    m.vm.unregister_ioevent(
        &doorbell,
        IoEventAddress::Mmio(0xd000_0000),
        DataMatch::U16(3),
    )
    .unwrap();
    m.vm.unregister_irqfd(&irq, 24).unwrap();
    assert!(m.vm.unregister_irqfd(&irq, 24).is_err());
}

#[test]
fn virtio_blk_over_the_legacy_intx_line() {
    let disk = temp_disk(16);
    let m = machine();
    m.add_block(open_image(&disk, false), "cobd0", Some(10))
        .unwrap();
    let mut heap = m.guest_heap();
    let want = disk.contents[512..1024].to_vec();
    let v = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1042)?;
                let mut d = BlkDriver::init_with(cpu, &f, &mut heap, 8, false, false)?;
                ensure(d.vector == 0x2a, format!("line vector {:#x}", d.vector))?;
                for _ in 0..3 {
                    let r = d.submit(
                        cpu,
                        &[BlkOp::Read {
                            sector: 1,
                            sectors: 1,
                        }],
                    )?;
                    ensure(r[0].status == 0 && r[0].data == want, "read over INTx")?;
                }
                ensure(d.counters.interrupts == 3, format!("{:?}", d.counters))?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    run_to_poweroff(&m, v);
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
    let ev = m.vm.trace().events();
    let raised = ev
        .iter()
        .filter(|e| matches!(e, Event::Inject(Interrupt::Line { irq: 10 })))
        .count();
    let lowered = ev
        .iter()
        .filter(|e| matches!(e, Event::LineLow { irq: 10 }))
        .count();
    assert_eq!(
        (raised, lowered),
        (3, 3),
        "raised per completion, lowered by the ISR read"
    );
}

/// Two vCPUs on their own threads: an MSI reaches the vCPU its destination
/// APIC id names, and only that one.
#[test]
fn msi_reaches_the_destination_vcpu_only() {
    let m = machine();
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut vcpus = Vec::new();
    for id in 0..2u32 {
        let got = got.clone();
        m.vm.set_program(
            id,
            Box::new(move |cpu| {
                let r = cpu.wait_interrupt(Duration::from_millis(if id == 1 { 3000 } else { 300 }));
                got.lock().unwrap().push((cpu.id(), r.ok()));
                Ok(GuestEnd::Poweroff)
            }),
        );
        vcpus.push(m.vm.create_sim_vcpu(id));
    }
    let handles: Vec<_> = vcpus
        .into_iter()
        .map(|mut v| {
            std::thread::spawn(move || loop {
                match v.run() {
                    Ok(VmExit::Interrupted) => continue,
                    Ok(VmExit::Poweroff) => return Ok(()),
                    Ok(other) => return Err(format!("{other:?}")),
                    Err(e) => return Err(e.to_string()),
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    m.vm.signal_msi(0xfee0_1000, 0x77).unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(()));
    }
    let mut got = got.lock().unwrap().clone();
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        vec![
            (0, None),
            (
                1,
                Some(Interrupt::Msi {
                    address: 0xfee0_1000,
                    data: 0x77
                })
            )
        ]
    );
}

/// Without an in-kernel irqchip `hlt` is the monitor's business: the vCPU
/// exits with `Halt`, and an interrupt the monitor raises ends the halt at the
/// next entry.
#[test]
fn halt_exits_without_an_irqchip() {
    use colinux_sim::vm::{SimConfig, SimVm};
    let vm = SimVm::new(SimConfig::default());
    vm.set_program(
        0,
        Box::new(|cpu| {
            let i = cpu.wait_interrupt(Duration::from_secs(2))?;
            cpu.outb(0x80, i.vector())?;
            Ok(GuestEnd::Poweroff)
        }),
    );
    let mut v = vm.create_sim_vcpu(0);
    let rip = v.get_regs().unwrap().rip;
    assert!(matches!(v.run().unwrap(), VmExit::Halt));
    assert_eq!(v.get_regs().unwrap().rip, rip, "RIP at the hlt");
    vm.signal_msi(0xfee0_0000, 0x3c).unwrap();
    match v.run().unwrap() {
        VmExit::IoOut { port: 0x80, data } => assert_eq!(data, &[0x3c]),
        other => panic!("{other:?}"),
    }
    assert_eq!(v.get_regs().unwrap().rip, rip + 1, "hlt completed");
    assert!(matches!(v.run().unwrap(), VmExit::Poweroff));
    let t = vm.trace().render();
    assert!(t.contains("exit rip=0xfff0 halt"), "{t}");
    assert!(t.contains("deliver vector=0x3c"), "{t}");
}
