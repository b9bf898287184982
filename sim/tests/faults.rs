//! Faults injected at the world-switch boundary, run through the daemon's vCPU
//! loop: interrupted and spurious exits are retried without the guest noticing,
//! a failing `KVM_RUN`, a crashed or stuck guest and a refused entry end the
//! machine with a report, lost interrupts and failing or stalled network
//! backends are survived — all within bounded time, all visible in the trace.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::fault::{Fault, FaultPlan};
use colinux_sim::guest::{GuestCpu, GuestEnd, GuestError, GuestResult};
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::guest_virtio::net::NetDriver;
use colinux_sim::guest_virtio::GuestAlloc;
use colinux_sim::loopback::Loopback;
use colinux_sim::machine::SimMachine;
use colinux_sim::trace::{Event, ExitKind};
use colinux_sim::vm::{GuestOutcome, SimConfig};
use common::*;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A block workload: discovery, a write, a read back, a flush.
fn blk_workload(
    mut heap: GuestAlloc,
) -> impl FnOnce(&mut GuestCpu) -> GuestResult<GuestEnd> + Send {
    move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        let r = d.submit(
            cpu,
            &[
                BlkOp::Write {
                    sector: 5,
                    data: vec![0xab; 1024],
                },
                BlkOp::Read {
                    sector: 5,
                    sectors: 2,
                },
                BlkOp::Flush,
            ],
        )?;
        ensure(r.iter().all(|x| x.status == 0), "status")?;
        ensure(r[1].data == vec![0xab; 1024], "read back")?;
        Ok(GuestEnd::Poweroff)
    }
}

fn blk_machine(config: SimConfig) -> (SimMachine, TempDisk) {
    let disk = temp_disk(32);
    let m = SimMachine::new(config, 64).unwrap();
    m.add_block(open_image(&disk, false), "cobd0", None)
        .unwrap();
    (m, disk)
}

/// The trace without the injected faults and the exits they caused.
fn without_faults(events: &[Event]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut skip_exit = false;
    for e in events {
        match e {
            Event::Fault { .. } => skip_exit = true,
            Event::Exit { .. } if skip_exit => skip_exit = false,
            _ => out.push(e.clone()),
        }
    }
    out
}

fn baseline() -> Vec<Event> {
    let (m, _disk) = blk_machine(SimConfig::default());
    let v = m
        .boot_vcpu(0, Box::new(blk_workload(m.guest_heap())))
        .unwrap();
    assert_eq!(run_daemon_loop(&m, v), MachineEvent::Poweroff);
    m.vm.trace().events()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// EINTR and spurious exits at random points: the loop retries, the guest
    /// sees exactly the same machine, and the trace shows every fault.
    #[test]
    fn interrupted_and_spurious_exits_are_retried(
        faults in prop::collection::btree_map(1..320u64, prop_oneof![Just(Fault::Interrupted), Just(Fault::SpuriousHalt)], 1..12)
    ) {
        let base = baseline();
        let (m, _disk) = blk_machine(SimConfig::default());
        let mut plan = FaultPlan::new();
        for (&run, &f) in &faults {
            plan = plan.at(0, run, f);
        }
        m.vm.set_faults(plan);
        let v = m.boot_vcpu(0, Box::new(blk_workload(m.guest_heap()))).unwrap();
        prop_assert_eq!(run_daemon_loop(&m, v), MachineEvent::Poweroff);
        let events = m.vm.trace().events();
        let injected = events.iter().filter(|e| matches!(e, Event::Fault { .. })).count();
        // Faults planned past the guest's last run never fire.
        prop_assert_eq!(injected + m.vm.faults().pending(), faults.len());
        let entries = base.iter().filter(|e| matches!(e, Event::Entry { .. })).count() as u64;
        let must_fire = faults.keys().filter(|&&r| r <= entries).count();
        prop_assert!(injected >= must_fire, "{} injected, {} planned within {} runs", injected, must_fire, entries);
        prop_assert_eq!(without_faults(&events), base);
    }
}

#[test]
fn failing_run_ends_the_machine_with_a_report() {
    let (m, _disk) = blk_machine(SimConfig::default());
    m.vm.set_faults(FaultPlan::new().at(0, 40, Fault::RunError(libc::EFAULT)));
    let v = m
        .boot_vcpu(0, Box::new(blk_workload(m.guest_heap())))
        .unwrap();
    let started = Instant::now();
    match run_daemon_loop(&m, v) {
        MachineEvent::Fatal { vcpu, report } => {
            assert_eq!(vcpu, 0);
            assert!(report.contains("KVM_RUN"), "{report}");
            assert!(
                report.contains("rip="),
                "report carries registers: {report}"
            );
        }
        other => panic!("expected a fatal event, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let t = m.vm.trace().render();
    assert!(t.contains("fault: RunError(14) at run 40"), "{t}");
    assert!(t.contains("run-error"));
}

#[test]
fn lost_interrupt_is_survived_by_polling() {
    let (m, _disk) = blk_machine(SimConfig::default());
    m.vm.set_faults(FaultPlan::new().failing_msis(1));
    let mut heap = m.guest_heap();
    let lost = Arc::new(Mutex::new(0));
    let lost2 = lost.clone();
    let v = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1042)?;
                let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
                d.patience = Duration::from_millis(100);
                let r = d.submit(
                    cpu,
                    &[BlkOp::Read {
                        sector: 1,
                        sectors: 1,
                    }],
                )?;
                ensure(r[0].status == 0, "status")?;
                // The next batch is interrupt-driven again.
                let r = d.submit(cpu, &[BlkOp::GetId])?;
                ensure(r[0].status == 0, "status")?;
                *lost2.lock().unwrap() = d.counters.lost_interrupts;
                ensure(d.counters.interrupts == 1, format!("{:?}", d.counters))?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    run_to_poweroff(&m, v);
    assert_eq!(*lost.lock().unwrap(), 1);
    let t = m.vm.trace().render();
    assert!(
        t.contains("dropped msi addr=0xfee00000 data=0x41: injected delivery failure"),
        "{t}"
    );
    assert!(t.contains("completions found by polling"));
}

#[test]
fn crashed_guest_is_a_triple_fault_with_registers() {
    let m = machine();
    let v = m
        .boot_vcpu(
            0,
            Box::new(|cpu| {
                cpu.outb(0x80, 0x42)?;
                panic!("guest bug");
            }),
        )
        .unwrap();
    match run_daemon_loop(&m, v) {
        MachineEvent::TripleFault { report, .. } => {
            assert!(report.contains("triple fault"), "{report}");
            assert!(report.contains("rax=0000000000000042"), "{report}");
        }
        other => panic!("expected a triple fault, got {other:?}"),
    }
    match m.vm.outcome(0) {
        Some(GuestOutcome::Failed(msg)) => assert!(msg.contains("guest bug"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stuck_guest_fails_the_run_in_bounded_time() {
    let config = SimConfig {
        step_timeout: Duration::from_millis(150),
        ..SimConfig::default()
    };
    let m = SimMachine::new(config, 64).unwrap();
    let v = m
        .boot_vcpu(
            0,
            Box::new(|cpu| {
                cpu.outb(0x80, 1)?;
                // Computes without any exit for far longer than the vCPU
                // waits (a loaded machine delays the 150 ms by a lot).
                std::thread::sleep(Duration::from_secs(3));
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    let t0 = Instant::now();
    match run_daemon_loop(&m, v) {
        MachineEvent::Fatal { report, .. } => {
            assert!(
                report.contains("did not reach its next instruction"),
                "{report}"
            )
        }
        other => panic!("expected a fatal event, got {other:?}"),
    }
    // The run failed on the step timeout, not when the guest came back.
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn guest_waiting_for_an_interrupt_that_never_comes_gives_up() {
    let m = machine();
    let v = m
        .boot_vcpu(
            0,
            Box::new(|cpu| match cpu.wait_interrupt(Duration::from_millis(120)) {
                Err(GuestError::NoInterrupt(_)) => Ok(GuestEnd::Poweroff),
                other => Err(GuestError::Device(format!("unexpected {other:?}"))),
            }),
        )
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(run_daemon_loop(&m, v), MachineEvent::Poweroff);
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
}

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn eth(tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend(std::iter::repeat_n(tag, 46));
    f
}

#[test]
fn net_backend_errors_drop_frames_and_the_guest_goes_on() {
    let m = machine();
    let (backend, net) = Loopback::new(true).unwrap();
    m.add_net(Box::new(backend), MAC).unwrap();
    m.service_backends_when_idle();
    net.fail_sends(2);
    net.fail_recvs(1);
    let mut heap = m.guest_heap();
    let v = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1041)?;
                let mut d = NetDriver::init(cpu, &f, &mut heap, 16, false)?;
                // Two sends fail in the backend: the guest still gets its buffers back.
                d.send(cpu, &[eth(1), eth(2), eth(3)])?;
                ensure(d.counters.tx_frames == 3, "tx buffers returned")?;
                // The one frame that went out echoes back, despite a failing receive.
                let got = d.recv(cpu, 1)?;
                ensure(got == vec![eth(3)], format!("{} frames", got.len()))?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    run_to_poweroff(&m, v);
    assert_eq!(net.sent(), vec![eth(3)]);
}

#[test]
fn stalled_net_backend_times_out_then_recovers() {
    let m = machine();
    let (backend, net) = Loopback::new(false).unwrap();
    m.add_net(Box::new(backend), MAC).unwrap();
    m.service_backends_when_idle();
    net.set_stalled(true);
    net.inject(eth(7));
    let n2 = net.clone();
    let mut heap = m.guest_heap();
    let v = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1041)?;
                let mut d = NetDriver::init(cpu, &f, &mut heap, 8, false)?;
                d.patience = Duration::from_millis(100);
                match d.recv(cpu, 1) {
                    Err(GuestError::NoInterrupt(_)) => cpu.note("net: backend stalled, gave up"),
                    other => {
                        return Err(GuestError::Device(format!("stalled recv gave {other:?}")))
                    }
                }
                // The host side wakes up while the guest halts.
                let waker = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    n2.set_stalled(false);
                });
                d.patience = Duration::from_secs(3);
                let got = d.recv(cpu, 1)?;
                let _ = waker.join();
                ensure(got == vec![eth(7)], "frame after the stall")?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    let t0 = Instant::now();
    run_to_poweroff(&m, v);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(m.vm.trace().render().contains("backend stalled, gave up"));
    // The kicks while halted are not in the trace (they depend on timing).
    let kicks =
        m.vm.trace()
            .events()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Exit {
                        kind: ExitKind::Interrupted,
                        ..
                    }
                )
            })
            .count();
    assert_eq!(kicks, 0);
}
