//! The daemon's virtio-blk over a backend that fails or stalls chosen calls
//! ([`FaultyDisk`]), driven by the simulated guest through the daemon's vCPU
//! loop: a failing read, write or flush fails only its own request with
//! `VIRTIO_BLK_S_IOERR` and changes nothing; the device serves the next
//! request as usual; a failed flush never claims durability; a stalled backend
//! delays completion without losing or duplicating the interrupt. A property
//! test checks all of it against an oracle for random requests and faults.

mod common;

use std::time::{Duration, Instant};

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::faulty_disk::{CallResult, DiskOp, FaultyDisk, FaultyDiskHandle};
use colinux_sim::guest::{GuestCpu, GuestEnd, GuestResult};
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::machine::SimMachine;
use colinux_sim::trace::{Event, Interrupt};
use colinux_sim::vm::GuestOutcome;
use common::*;
use proptest::prelude::*;

const SECTORS: u64 = 32;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pattern(sectors: u64) -> Vec<u8> {
    (0..sectors as usize * 512)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 9) as u8)
        .collect()
}

fn sector_data(n: u32, seed: u8) -> Vec<u8> {
    (0..n as usize * 512)
        .map(|i| seed.wrapping_add(i as u8) ^ 0x5a)
        .collect()
}

fn faulty_machine(read_only: bool) -> (SimMachine, FaultyDiskHandle) {
    let (disk, handle) = FaultyDisk::new(pattern(SECTORS), read_only);
    let m = machine();
    m.add_block(disk, "cobd0", None).unwrap();
    (m, handle)
}

fn run(
    m: &SimMachine,
    program: impl FnOnce(&mut GuestCpu) -> GuestResult<GuestEnd> + Send + 'static,
) {
    let vcpu = m.boot_vcpu(0, Box::new(program)).unwrap();
    let ev = run_daemon_loop(m, vcpu);
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff)),
        "guest outcome; trace:\n{}",
        m.vm.trace().render()
    );
    assert_eq!(ev, MachineEvent::Poweroff);
}

/// MSIs the device raised (one per completion batch).
fn injected_msis(m: &SimMachine) -> usize {
    m.vm.trace()
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Inject(Interrupt::Msi { .. })))
        .count()
}

fn read(sector: u64, sectors: u32) -> BlkOp {
    BlkOp::Read { sector, sectors }
}

fn write(sector: u64, data: Vec<u8>) -> BlkOp {
    BlkOp::Write { sector, data }
}

#[test]
fn failing_read_fails_only_its_request() {
    let (m, disk) = faulty_machine(false);
    disk.fail_next(DiskOp::Read, 1);
    let want = pattern(SECTORS);
    let mut heap = m.guest_heap();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        let r = d.submit(cpu, &[read(3, 1), read(4, 2)])?;
        ensure(
            r[0].status == S_IOERR,
            format!("failed read: {}", r[0].status),
        )?;
        ensure(r[1].status == S_OK, format!("next read: {}", r[1].status))?;
        ensure(r[1].data == want[4 * 512..6 * 512], "next read's data")?;
        // The same sector reads fine once the backend recovers.
        let r = d.submit(cpu, &[read(3, 1)])?;
        ensure(
            r[0].status == S_OK && r[0].data == want[3 * 512..4 * 512],
            "retry",
        )?;
        Ok(GuestEnd::Poweroff)
    });
    let results: Vec<_> = disk.calls().iter().map(|c| (c.op, c.result)).collect();
    // The discovery reads nothing from the disk: the three reads are the guest's.
    assert_eq!(
        results,
        [
            (DiskOp::Read, CallResult::Failed),
            (DiskOp::Read, CallResult::Done),
            (DiskOp::Read, CallResult::Done)
        ]
    );
    assert_eq!(injected_msis(&m), 2, "one interrupt per batch");
}

#[test]
fn failing_write_changes_nothing_and_the_next_write_lands() {
    let (m, disk) = faulty_machine(false);
    disk.fail_next(DiskOp::Write, 1);
    let mut heap = m.guest_heap();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        let r = d.submit(
            cpu,
            &[write(2, vec![0xaa; 512]), write(6, vec![0xbb; 1024])],
        )?;
        ensure(
            r[0].status == S_IOERR,
            format!("failed write: {}", r[0].status),
        )?;
        ensure(r[1].status == S_OK, format!("next write: {}", r[1].status))?;
        Ok(GuestEnd::Poweroff)
    });
    let mut want = pattern(SECTORS);
    want[6 * 512..8 * 512].fill(0xbb);
    assert_eq!(disk.contents(), want, "only the second write landed");
}

#[test]
fn failing_flush_claims_nothing_durable_until_a_flush_succeeds() {
    let (m, disk) = faulty_machine(false);
    disk.fail_next(DiskOp::Flush, 1);
    let d2 = disk.clone();
    let mut heap = m.guest_heap();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        let r = d.submit(cpu, &[write(1, vec![0xcc; 512]), BlkOp::Flush])?;
        ensure(r[0].status == S_OK, "write")?;
        ensure(
            r[1].status == S_IOERR,
            format!("failed flush: {}", r[1].status),
        )?;
        ensure(
            d2.durable() == pattern(SECTORS),
            "a failed flush made the write durable",
        )?;
        cpu.note("blk: flush failed, nothing durable; retrying");
        let r = d.submit(cpu, &[BlkOp::Flush])?;
        ensure(
            r[0].status == S_OK,
            format!("retried flush: {}", r[0].status),
        )?;
        ensure(
            d2.durable()[512..1024] == [0xcc; 512],
            "the retried flush did not make the write durable",
        )?;
        Ok(GuestEnd::Poweroff)
    });
    assert_eq!(disk.durable(), disk.contents());
    assert!(m
        .vm
        .trace()
        .render()
        .contains("flush failed, nothing durable"));
}

#[test]
fn stalled_backend_delays_completion_but_loses_nothing() {
    let (m, disk) = faulty_machine(false);
    let stall = Duration::from_millis(150);
    disk.stall_next(DiskOp::Write, 1, stall);
    disk.stall_next(DiskOp::Flush, 1, stall);
    let mut heap = m.guest_heap();
    let t0 = Instant::now();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        let before = d.counters.interrupts;
        let r = d.submit(cpu, &[write(9, vec![0xdd; 2048]), BlkOp::Flush, read(9, 4)])?;
        ensure(r.iter().all(|x| x.status == S_OK), format!("{r:?}"))?;
        ensure(
            r[2].data == vec![0xdd; 2048],
            "read after the stalled write",
        )?;
        ensure(
            d.counters.interrupts - before == 1,
            "one interrupt for the batch",
        )?;
        ensure(d.counters.lost_interrupts == 0, "lost interrupts")?;
        Ok(GuestEnd::Poweroff)
    });
    let took = t0.elapsed();
    assert!(took >= 2 * stall, "the stalls were not felt: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "stall grew into a hang: {took:?}"
    );
    assert_eq!(disk.durable()[9 * 512..13 * 512], [0xdd; 2048]);
    assert_eq!(injected_msis(&m), 1);
}

/// Boundary trace of a write that fails in the backend, then a flush that
/// fails, then both retried: the review shows how errors reach the guest.
#[test]
fn trace_of_backend_errors() {
    let (m, disk) = faulty_machine(false);
    disk.fail_next(DiskOp::Write, 1);
    disk.fail_next(DiskOp::Flush, 1);
    let mut heap = m.guest_heap();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 8, false)?;
        m_note(cpu, "write + flush, both fail in the backend");
        let r = d.submit(cpu, &[write(0, vec![1; 512]), BlkOp::Flush])?;
        m_note(cpu, &format!("statuses {} {}", r[0].status, r[1].status));
        let r = d.submit(cpu, &[write(0, vec![1; 512]), BlkOp::Flush])?;
        m_note(cpu, &format!("retried: {} {}", r[0].status, r[1].status));
        Ok(GuestEnd::Poweroff)
    });
    // Discovery and set-up are pinned by blk_trace; keep the requests only.
    let trace = m.vm.trace().render();
    let start = trace
        .find("blk: write + flush")
        .expect("the note opening the requests");
    let from = trace[..start].rfind('\n').map_or(0, |i| i + 1);
    insta::assert_snapshot!(&trace[from..]);
}

fn m_note(cpu: &mut GuestCpu, s: &str) {
    cpu.note(format!("blk: {s}"));
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, u32),
    Write(u64, u32, u8),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SECTORS, 1..8u32).prop_map(|(s, n)| Op::Read(s.min(SECTORS - u64::from(n)), n)),
        4 => (0..SECTORS, 1..8u32, any::<u8>())
            .prop_map(|(s, n, seed)| Op::Write(s.min(SECTORS - u64::from(n)), n, seed)),
        2 => Just(Op::Flush),
    ]
}

/// A batch and the faults armed before it: how many reads, writes and
/// flushes fail next.
type Batch = (Vec<Op>, (u32, u32, u32));

fn batch() -> impl Strategy<Value = Batch> {
    (
        prop::collection::vec(op(), 1..6),
        (0..3u32, 0..3u32, 0..2u32),
    )
}

/// Random requests with random faults: every request either succeeds and
/// agrees with the oracle, or fails with IOERR exactly when the backend
/// failed its call and leaves the oracle unchanged; after every successful
/// flush the durable copy equals the oracle.
fn oracle_run(batches: Vec<Batch>) {
    let (m, disk) = faulty_machine(false);
    let handle = disk.clone();
    let nbatches = batches.len();
    let mut heap = m.guest_heap();
    run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 16, false)?;
        let mut model = pattern(SECTORS);
        let mut durable = model.clone();
        for (b, (ops, (fr, fw, ff))) in batches.iter().enumerate() {
            handle.fail_next(DiskOp::Read, *fr);
            handle.fail_next(DiskOp::Write, *fw);
            handle.fail_next(DiskOp::Flush, *ff);
            let (mut fr, mut fw, mut ff) = (*fr, *fw, *ff);
            let reqs: Vec<BlkOp> = ops
                .iter()
                .map(|o| match *o {
                    Op::Read(s, n) => read(s, n),
                    Op::Write(s, n, seed) => write(s, sector_data(n, seed)),
                    Op::Flush => BlkOp::Flush,
                })
                .collect();
            let done = d.submit(cpu, &reqs)?;
            ensure(done.len() == reqs.len(), "lost completions")?;
            // The device serves a batch in ring order, so the armed faults hit
            // the first calls of each kind.
            for (i, (o, r)) in ops.iter().zip(&done).enumerate() {
                let at = format!("batch {b} op {i} {o:?}");
                let fails = |n: &mut u32| {
                    let f = *n > 0;
                    *n = n.saturating_sub(1);
                    f
                };
                match *o {
                    Op::Read(s, n) => {
                        let range = s as usize * 512..(s as usize + n as usize) * 512;
                        if fails(&mut fr) {
                            ensure(r.status == S_IOERR, format!("{at}: {}", r.status))?;
                        } else {
                            ensure(r.status == S_OK, format!("{at}: {}", r.status))?;
                            ensure(r.data == model[range], format!("{at}: data"))?;
                        }
                    }
                    Op::Write(s, n, seed) => {
                        if fails(&mut fw) {
                            ensure(r.status == S_IOERR, format!("{at}: {}", r.status))?;
                        } else {
                            ensure(r.status == S_OK, format!("{at}: {}", r.status))?;
                            model[s as usize * 512..(s as usize + n as usize) * 512]
                                .copy_from_slice(&sector_data(n, seed));
                        }
                    }
                    Op::Flush => {
                        if fails(&mut ff) {
                            ensure(r.status == S_IOERR, format!("{at}: {}", r.status))?;
                        } else {
                            ensure(r.status == S_OK, format!("{at}: {}", r.status))?;
                            durable = model.clone();
                        }
                    }
                }
            }
            ensure(handle.contents() == model, format!("batch {b}: contents"))?;
            ensure(handle.durable() == durable, format!("batch {b}: durable"))?;
            // Faults not consumed by this batch are disarmed for the next one.
            handle.fail_next(DiskOp::Read, 0);
            handle.fail_next(DiskOp::Write, 0);
            handle.fail_next(DiskOp::Flush, 0);
        }
        ensure(d.counters.lost_interrupts == 0, "lost interrupts")?;
        Ok(GuestEnd::Poweroff)
    });
    assert_eq!(injected_msis(&m), nbatches, "one interrupt per batch");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn random_requests_and_faults_agree_with_the_oracle(
        batches in prop::collection::vec(batch(), 1..6)
    ) {
        oracle_run(batches);
    }
}
