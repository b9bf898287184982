//! Property tests of the daemon's virtio-blk driven by the simulated guest
//! through the daemon's vCPU loop: random request batches against an
//! in-memory disk oracle (file-backed device), read-only refusal, flush
//! ordering, one interrupt per completion batch, and hostile descriptor
//! chains rejected without panics, hangs or stray writes.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::guest::{GuestCpu, GuestEnd, GuestError, GuestResult};
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp, STATUS_UNSET};
use colinux_sim::guest_virtio::virtq::{DESC_NEXT, DESC_WRITE};
use colinux_sim::guest_virtio::GuestAlloc;
use colinux_sim::trace::{Event, Interrupt};
use colinux_sim::vm::GuestOutcome;
use common::*;
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};

const SECTORS: u64 = 64;
const BLK_VECTOR: u8 = 0x41;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
enum Op {
    Read(u64, u32),
    Write(u64, u32, u8),
    Flush,
    GetId,
}

fn op() -> impl Strategy<Value = Op> {
    // Sectors up to 70 on a 64-sector disk: some requests run off the end.
    prop_oneof![
        4 => (0..70u64, 1..8u32).prop_map(|(s, n)| Op::Read(s, n)),
        4 => (0..70u64, 1..8u32, any::<u8>()).prop_map(|(s, n, seed)| Op::Write(s, n, seed)),
        1 => Just(Op::Flush),
        1 => Just(Op::GetId),
    ]
}

fn data(n: u32, seed: u8) -> Vec<u8> {
    (0..n as usize * 512)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(13)) ^ (i >> 9) as u8)
        .collect()
}

/// Runs the guest program to its end through the daemon loop; returns the
/// machine event and the guest outcome.
fn run(
    m: &colinux_sim::machine::SimMachine,
    program: impl FnOnce(&mut GuestCpu) -> GuestResult<GuestEnd> + Send + 'static,
) -> (MachineEvent, Option<GuestOutcome>) {
    let vcpu = m.boot_vcpu(0, Box::new(program)).unwrap();
    let ev = run_daemon_loop(m, vcpu);
    (ev, m.vm.outcome(0))
}

fn deliveries(m: &colinux_sim::machine::SimMachine, vector: u8) -> usize {
    m.vm.trace()
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Deliver { irq, .. } if irq.vector() == vector))
        .count()
}

/// The oracle run: every batch is submitted with one doorbell; results are
/// checked in the guest against the model, flushes against the host file.
fn oracle_run(batches: Vec<Vec<Op>>, read_only: bool, event_idx: bool) {
    let disk = temp_disk(SECTORS);
    let m = machine();
    m.add_block(open_image(&disk, read_only), "cobd0", None)
        .unwrap();
    let mut heap = m.guest_heap();
    let mut model = disk.contents.clone();
    let path: PathBuf = disk.path.clone();
    let nbatches = batches.len();
    let (ev, outcome) = run(&m, move |cpu| {
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, 32, event_idx)?;
        ensure(d.capacity == SECTORS, format!("capacity {}", d.capacity))?;
        ensure(d.read_only == read_only, "read-only feature")?;
        for (b, batch) in batches.iter().enumerate() {
            let mut flushed = false;
            let ops: Vec<BlkOp> = batch
                .iter()
                .map(|o| match *o {
                    Op::Read(sector, sectors) => BlkOp::Read { sector, sectors },
                    Op::Write(sector, n, seed) => BlkOp::Write {
                        sector,
                        data: data(n, seed),
                    },
                    Op::Flush => BlkOp::Flush,
                    Op::GetId => BlkOp::GetId,
                })
                .collect();
            let done = d.submit(cpu, &ops)?;
            ensure(done.len() == ops.len(), "lost completions")?;
            for (i, (o, r)) in batch.iter().zip(&done).enumerate() {
                let at = format!("batch {b} op {i} {o:?}");
                match *o {
                    Op::Read(s, n) => {
                        if s + u64::from(n) <= SECTORS {
                            let want = &model[s as usize * 512..(s as usize + n as usize) * 512];
                            ensure(r.status == 0, format!("{at}: status {}", r.status))?;
                            ensure(
                                r.data == want,
                                format!("{at}: data differs from the last write"),
                            )?;
                            ensure(
                                r.used_len == n * 512 + 1,
                                format!("{at}: used len {}", r.used_len),
                            )?;
                        } else {
                            ensure(
                                r.status == 1,
                                format!("{at}: out of range read status {}", r.status),
                            )?;
                        }
                    }
                    Op::Write(s, n, seed) => {
                        if read_only || s + u64::from(n) > SECTORS {
                            ensure(
                                r.status == 1,
                                format!("{at}: refused write status {}", r.status),
                            )?;
                        } else {
                            ensure(r.status == 0, format!("{at}: status {}", r.status))?;
                            model[s as usize * 512..(s as usize + n as usize) * 512]
                                .copy_from_slice(&data(n, seed));
                        }
                    }
                    Op::Flush => {
                        ensure(r.status == 0, format!("{at}: flush status {}", r.status))?;
                        // The flush completes after every request before it.
                        for (j, p) in done[..i].iter().enumerate() {
                            ensure(
                                p.seq < r.seq,
                                format!("{at}: op {j} completed after the flush"),
                            )?;
                        }
                        flushed = true;
                    }
                    Op::GetId => {
                        ensure(r.status == 0, format!("{at}: get-id status {}", r.status))?;
                        let mut want = b"cobd0".to_vec();
                        want.resize(20, 0);
                        ensure(r.data == want, format!("{at}: id {:?}", r.data))?;
                    }
                }
            }
            if flushed {
                // After a flush everything completed so far is in the image file.
                let file = std::fs::read(&path)
                    .map_err(|e| GuestError::Device(format!("reading the image: {e}")))?;
                ensure(
                    file == model,
                    format!("batch {b}: image differs from the writes after a flush"),
                )?;
            }
        }
        ensure(
            d.counters.interrupts == batches.len() as u64,
            format!(
                "{} interrupts for {} batches",
                d.counters.interrupts,
                batches.len()
            ),
        )?;
        ensure(d.counters.lost_interrupts == 0, "lost interrupts")?;
        let file = std::fs::read(&path).map_err(|e| GuestError::Device(e.to_string()))?;
        ensure(file == model, "image differs from the model at the end")?;
        Ok(GuestEnd::Poweroff)
    });
    assert_eq!(outcome, Some(GuestOutcome::Ended(GuestEnd::Poweroff)));
    assert_eq!(ev, MachineEvent::Poweroff);
    // Exactly one MSI per completion batch reached the guest.
    assert_eq!(deliveries(&m, BLK_VECTOR), nbatches);
    let injected = m
        .vm
        .trace()
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Inject(Interrupt::Msi { data, .. }) if *data as u8 == BLK_VECTOR))
        .count();
    assert_eq!(injected, nbatches);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn requests_match_the_disk_oracle(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8),
        event_idx in any::<bool>(),
    ) {
        oracle_run(batches, false, event_idx);
    }

    #[test]
    fn read_only_disk_refuses_writes(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..5),
    ) {
        oracle_run(batches, true, false);
    }
}

/// A defect that makes a descriptor chain invalid for virtio-blk.
#[derive(Debug, Clone)]
enum Defect {
    ZeroLength(usize),
    OutOfRange(usize, u64),
    Loop(usize),
    BadNext(u16),
    ReadableAfterWritable,
    NoStatus,
}

#[derive(Debug, Clone)]
struct Hostile {
    lens: Vec<u32>,
    offsets: Vec<u64>,
    defect: Defect,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (2..6usize)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(1..2048u32, n),
                prop::collection::vec(0..(CANARY_LEN - 4096), n),
                prop_oneof![
                    (0..n).prop_map(Defect::ZeroLength),
                    (
                        0..n,
                        prop_oneof![
                            Just(64u64 << 20),
                            Just(u64::MAX - 16),
                            0x1_0000_0000u64..0x2_0000_0000
                        ]
                    )
                        .prop_map(|(i, a)| Defect::OutOfRange(i, a)),
                    (0..n).prop_map(Defect::Loop),
                    (16u16..u16::MAX).prop_map(Defect::BadNext),
                    Just(Defect::ReadableAfterWritable),
                    Just(Defect::NoStatus),
                ],
            )
        })
        .prop_map(|(lens, offsets, defect)| Hostile {
            lens,
            offsets,
            defect,
        })
}

const CANARY_LEN: u64 = 1 << 20;
const QSIZE: u16 = 16;

/// Writes `chains` raw into the queue (descriptors `4k..4k+n` for chain k),
/// rings once, and returns how many the device returned.
fn submit_hostile(
    cpu: &mut GuestCpu,
    d: &mut BlkDriver,
    canary: u64,
    chains: &[Hostile],
) -> GuestResult<Vec<(u32, u32)>> {
    let mem = cpu.mem().clone();
    let q = &mut d.queue;
    for (k, h) in chains.iter().enumerate() {
        let base = (k * 6) as u16;
        let n = h.lens.len();
        for i in 0..n {
            let mut addr = canary + h.offsets[i];
            let mut len = h.lens[i];
            // Readable header first, then writable buffers (a well-formed shape)...
            let mut flags = if i == 0 { 0 } else { DESC_WRITE };
            let mut next = base + i as u16 + 1;
            if i + 1 < n {
                flags |= DESC_NEXT;
            }
            // ...then one defect.
            match h.defect {
                Defect::ZeroLength(j) if j == i => len = 0,
                Defect::OutOfRange(j, a) if j == i => addr = a,
                Defect::Loop(j) if i + 1 == n => {
                    flags |= DESC_NEXT;
                    next = base + j as u16;
                }
                Defect::BadNext(x) if i + 1 == n => {
                    flags |= DESC_NEXT;
                    next = x;
                }
                Defect::ReadableAfterWritable if i + 1 == n => flags &= !DESC_WRITE,
                Defect::NoStatus => flags &= !DESC_WRITE,
                _ => {}
            }
            q.ring()
                .write_desc(&mem, base + i as u16, addr, len, flags, next)?;
        }
        q.push_avail(&mem, base)?;
    }
    if q.publish(&mem)? {
        d.dev.kick(cpu, &d.queue)?;
    }
    let mut others = Vec::new();
    colinux_sim::guest_virtio::transport::wait_vector(cpu, BLK_VECTOR, d.patience, &mut others)?;
    let q = &d.queue;
    let idx: u16 = mem
        .read_obj(GuestAddress(q.used + 2))
        .map_err(|_| GuestError::Device("used idx".into()))?;
    let mut used = Vec::new();
    for i in 0..idx {
        let at = q.used + 4 + 8 * u64::from(i % q.size);
        let id: u32 = mem.read_obj(GuestAddress(at)).unwrap_or(u32::MAX);
        let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap_or(u32::MAX);
        used.push((id, len));
    }
    Ok(used)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn hostile_chains_are_rejected(chains in prop::collection::vec(hostile(), 1..3), event_idx in any::<bool>()) {
        let disk = temp_disk(SECTORS);
        let m = machine();
        m.add_block(open_image(&disk, false), "cobd0", None).unwrap();
        let heap = m.guest_heap();
        let before = std::fs::read(&disk.path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let n = chains.len();
        let (ev, outcome) = run(&m, move |cpu| {
            let mut heap: GuestAlloc = heap;
            let canary = heap.alloc(CANARY_LEN, 4096)?;
            let mem = cpu.mem().clone();
            mem.write_slice(&vec![0xcc; CANARY_LEN as usize], GuestAddress(canary))
                .map_err(|_| GuestError::Device("canary".into()))?;
            let f = find(cpu, 0x1042)?;
            let mut d = BlkDriver::init(cpu, &f, &mut heap, QSIZE, event_idx)?;
            let used = submit_hostile(cpu, &mut d, canary, &chains)?;
            let mut after = vec![0u8; CANARY_LEN as usize];
            mem.read_slice(&mut after, GuestAddress(canary))
                .map_err(|_| GuestError::Device("canary".into()))?;
            ensure(after.iter().all(|&b| b == 0xcc), "the device wrote into a rejected chain's buffers")?;
            *seen2.lock().unwrap() = used;
            // A driver that sees garbage resets the device; it must work again.
            let mut d = BlkDriver::init(cpu, &f, &mut heap, QSIZE, event_idx)?;
            let r = d.submit(cpu, &[BlkOp::Write { sector: 1, data: vec![0x77; 512] }, BlkOp::Read { sector: 1, sectors: 1 }])?;
            ensure(r[0].status == 0 && r[1].status == 0 && r[1].data == vec![0x77; 512], "device unusable after hostile chains")?;
            ensure(r.iter().all(|x| x.status != STATUS_UNSET), "status unset")?;
            Ok(GuestEnd::Poweroff)
        });
        prop_assert_eq!(outcome, Some(GuestOutcome::Ended(GuestEnd::Poweroff)));
        prop_assert_eq!(ev, MachineEvent::Poweroff);
        let used = seen.lock().unwrap().clone();
        // Every hostile chain came back, unused (length 0), in order.
        prop_assert_eq!(used.len(), n);
        for (k, (id, len)) in used.iter().enumerate() {
            prop_assert_eq!(*id, (k * 6) as u32);
            prop_assert_eq!(*len, 0);
        }
        // Nothing reached the disk but the final write of sector 1.
        let after = std::fs::read(&disk.path).unwrap();
        prop_assert_eq!(&after[..512], &before[..512]);
        prop_assert_eq!(&after[1024..], &before[1024..]);
    }
}

/// A head index past the queue, and an overlong chain through an indirect
/// table: the device neither panics nor hangs, and a reset recovers it.
#[test]
fn head_out_of_range_and_indirect_garbage_do_not_wedge_the_device() {
    let disk = temp_disk(SECTORS);
    let m = machine();
    m.add_block(open_image(&disk, false), "cobd0", None)
        .unwrap();
    let mut heap = m.guest_heap();
    let (ev, outcome) = run(&m, move |cpu| {
        let mem = cpu.mem().clone();
        let f = find(cpu, 0x1042)?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, QSIZE, false)?;
        d.patience = std::time::Duration::from_millis(200);
        // An indirect descriptor whose table is 4 KiB of 0xff (256 entries,
        // every one chained to the next): overlong and out of range.
        let table = heap.alloc(4096, 4096)?;
        mem.write_slice(&[0xff; 4096], GuestAddress(table))
            .map_err(|_| GuestError::Device("table".into()))?;
        d.queue.ring().write_desc(&mem, 0, table, 4096, 4, 0)?;
        d.queue.push_avail(&mem, 0)?;
        // A head index far past the queue size.
        d.queue.push_avail(&mem, 999)?;
        if d.queue.publish(&mem)? {
            d.dev.kick(cpu, &d.queue)?;
        }
        cpu.note("hostile: waiting (bounded) for whatever the device does");
        let _ = cpu.wait_interrupt(d.patience);
        let q = &d.queue;
        let idx: u16 = mem.read_obj(GuestAddress(q.used + 2)).unwrap_or(0);
        let id: u32 = mem.read_obj(GuestAddress(q.used + 4)).unwrap_or(u32::MAX);
        let len: u32 = mem.read_obj(GuestAddress(q.used + 8)).unwrap_or(u32::MAX);
        ensure(
            idx >= 1 && id == 0 && len == 0,
            format!("indirect garbage: used idx {idx}, first ({id}, {len})"),
        )?;
        let mut d = BlkDriver::init(cpu, &f, &mut heap, QSIZE, false)?;
        let r = d.submit(
            cpu,
            &[BlkOp::Read {
                sector: 2,
                sectors: 1,
            }],
        )?;
        ensure(r[0].status == 0, "device unusable after reset")?;
        Ok(GuestEnd::Poweroff)
    });
    assert_eq!(outcome, Some(GuestOutcome::Ended(GuestEnd::Poweroff)));
    assert_eq!(ev, MachineEvent::Poweroff);
}
