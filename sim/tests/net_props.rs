//! Property tests of the daemon's virtio-net driven by the simulated guest
//! through the daemon's vCPU loop, over a loopback backend that echoes every
//! frame: each valid frame sent arrives at the backend once, in order,
//! unchanged, and comes back to the guest the same way; malformed lengths are
//! dropped; every interrupt injected is delivered exactly once, in order.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use colinux_daemon::vmm::devices::spawn_backend_poller;
use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_net::{MAX_FRAME_LEN, MIN_FRAME_LEN};
use colinux_sim::guest::GuestEnd;
use colinux_sim::guest_virtio::net::NetDriver;
use colinux_sim::loopback::Loopback;
use colinux_sim::trace::{Event, Interrupt};
use colinux_sim::vm::GuestOutcome;
use common::*;
use proptest::prelude::*;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x07];

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(29)))
        .collect()
}

fn lengths() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => MIN_FRAME_LEN..=MAX_FRAME_LEN,
        1 => 1..MIN_FRAME_LEN,
        1 => (MAX_FRAME_LEN + 1)..2000,
    ]
}

/// The MSI messages injected and delivered, in order.
fn msi_flow(events: &[Event]) -> (Vec<Interrupt>, Vec<Interrupt>) {
    let inj = events
        .iter()
        .filter_map(|e| match e {
            Event::Inject(i) => Some(*i),
            _ => None,
        })
        .collect();
    let del = events
        .iter()
        .filter_map(|e| match e {
            Event::Deliver { irq, .. } => Some(*irq),
            _ => None,
        })
        .collect();
    (inj, del)
}

fn echo_run(frames: Vec<(usize, u8)>, chunk: usize, qsize: u16, event_idx: bool, poller: bool) {
    let m = machine();
    let (backend, net) = Loopback::new(true).unwrap();
    m.add_net(Box::new(backend), MAC).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = if poller {
        // The daemon's own backend poller thread feeds rx, asynchronously.
        Some(spawn_backend_poller(m.pci.clone(), stop.clone()))
    } else {
        m.service_backends_when_idle();
        None
    };
    let frames: Vec<Vec<u8>> = frames.iter().map(|&(l, s)| frame(l, s)).collect();
    let valid: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&f.len()))
        .cloned()
        .collect();
    let sent = frames.clone();
    let want = valid.clone();
    let mut heap = m.guest_heap();
    let vcpu = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1041)?;
                let mut d = NetDriver::init(cpu, &f, &mut heap, qsize, event_idx)?;
                let mut got = Vec::new();
                for c in sent.chunks(chunk) {
                    d.send(cpu, c)?;
                    got.extend(d.poll(cpu)?);
                }
                let missing = want.len().saturating_sub(got.len());
                if missing > 0 {
                    got.extend(d.recv(cpu, missing)?);
                }
                ensure(
                    got.len() == want.len(),
                    format!("{} frames back, {} sent", got.len(), want.len()),
                )?;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    ensure(
                        g == w,
                        format!(
                            "frame {i} changed on the way ({} vs {} bytes)",
                            g.len(),
                            w.len()
                        ),
                    )?;
                }
                ensure(d.counters.rx_bad == 0, "malformed rx buffers")?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    let ev = run_daemon_loop(&m, vcpu);
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = thread {
        t.join().unwrap();
    }
    if m.vm.outcome(0) != Some(GuestOutcome::Ended(GuestEnd::Poweroff))
        || std::env::var("SIM_DEBUG").is_ok()
    {
        let t = m.vm.trace().render();
        let lines: Vec<&str> = t.lines().collect();
        eprintln!(
            "event {ev:?}\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
    assert_eq!(ev, MachineEvent::Poweroff);
    // The backend saw each valid frame once, in order, unchanged; nothing else.
    assert_eq!(net.sent(), valid);
    assert_eq!(net.waiting(), 0);
    // Every interrupt injected reached the guest exactly once, in order.
    let (inj, del) = msi_flow(&m.vm.trace().events());
    if poller {
        // The poller thread runs beside the guest: an interrupt it raises while
        // the guest powers off (having found the frame by polling) is never
        // taken. Everything else is delivered once, in order.
        assert_eq!(&inj[..del.len()], &del[..]);
        assert!(
            inj.len() - del.len() <= 1,
            "{} injected, {} delivered",
            inj.len(),
            del.len()
        );
    } else {
        assert_eq!(inj, del);
    }
    // One tx interrupt per tx batch that completed frames.
    let per_kick = usize::from(qsize / 2);
    let batches: usize = frames
        .chunks(chunk)
        .map(|c| c.len().div_ceil(per_kick))
        .sum();
    let tx = del.iter().filter(|i| i.vector() == 0x42).count();
    assert_eq!(tx, batches);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn loopback_frames_arrive_once_in_order_unchanged(
        frames in prop::collection::vec((lengths(), any::<u8>()), 1..24),
        chunk in 1..6usize,
        qsize in prop_oneof![Just(8u16), Just(16), Just(64)],
        event_idx in any::<bool>(),
    ) {
        echo_run(frames, chunk, qsize, event_idx, false);
    }

    #[test]
    fn loopback_with_the_daemon_poller_thread(
        frames in prop::collection::vec((MIN_FRAME_LEN..=MAX_FRAME_LEN, any::<u8>()), 1..16),
        chunk in 1..5usize,
        event_idx in any::<bool>(),
    ) {
        echo_run(frames, chunk, 8, event_idx, true);
    }
}

/// What makes a transmit chain unacceptable.
#[derive(Debug, Clone)]
enum TxDefect {
    Writable(usize),
    ZeroLength(usize),
    OutOfRange(usize),
    Loop(usize),
    TooShort,
    TooLong,
}

fn tx_defect() -> impl Strategy<Value = TxDefect> {
    prop_oneof![
        (0..3usize).prop_map(TxDefect::Writable),
        (0..3usize).prop_map(TxDefect::ZeroLength),
        (0..3usize).prop_map(TxDefect::OutOfRange),
        (0..3usize).prop_map(TxDefect::Loop),
        Just(TxDefect::TooShort),
        Just(TxDefect::TooLong),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Hostile transmit chains are dropped (nothing reaches the backend), all
    /// come back to the guest, and the card keeps working.
    #[test]
    fn hostile_tx_chains_are_dropped(defects in prop::collection::vec(tx_defect(), 1..3)) {
        use colinux_sim::guest_virtio::virtq::{DESC_NEXT, DESC_WRITE};
        use vm_memory::{Bytes, GuestAddress};
        let m = machine();
        let (backend, net) = Loopback::new(false).unwrap();
        m.add_net(Box::new(backend), MAC).unwrap();
        let mut heap = m.guest_heap();
        let n = defects.len();
        let (ev, outcome) = {
            let v = m.boot_vcpu(0, Box::new(move |cpu| {
                let mem = cpu.mem().clone();
                let buf = heap.alloc(8192, 4096)?;
                let f = find(cpu, 0x1041)?;
                let mut d = NetDriver::init(cpu, &f, &mut heap, 16, false)?;
                for (k, defect) in defects.iter().enumerate() {
                    let base = (k * 4) as u16;
                    // header, 60-byte frame in two pieces: a valid shape...
                    let mut descs = [(buf, 12u32, 0u16), (buf + 12, 30, 0), (buf + 42, 30, 0)];
                    match *defect {
                        TxDefect::Writable(i) => descs[i].2 |= DESC_WRITE,
                        TxDefect::ZeroLength(i) => descs[i].1 = 0,
                        TxDefect::OutOfRange(i) => descs[i].0 = 1 << 40,
                        TxDefect::Loop(_) => {}
                        TxDefect::TooShort => { descs[1].1 = 1; descs[2].1 = 1; }
                        TxDefect::TooLong => { descs[1].1 = 4000; descs[2].1 = 4000; }
                    }
                    for (i, &(a, l, fl)) in descs.iter().enumerate() {
                        let (flags, next) = match (i, defect) {
                            (2, TxDefect::Loop(j)) => (fl | DESC_NEXT, base + *j as u16),
                            (2, _) => (fl, 0),
                            _ => (fl | DESC_NEXT, base + i as u16 + 1),
                        };
                        d.tx.ring().write_desc(&mem, base + i as u16, a, l, flags, next)?;
                    }
                    d.tx.push_avail(&mem, base)?;
                }
                if d.tx.publish(&mem)? {
                    d.dev.kick(cpu, &d.tx)?;
                }
                let mut others = Vec::new();
                colinux_sim::guest_virtio::transport::wait_vector(cpu, 0x42, d.patience, &mut others)?;
                let idx: u16 = mem.read_obj(GuestAddress(d.tx.used + 2)).unwrap_or(0);
                ensure(usize::from(idx) == n, format!("{idx} of {n} chains returned"))?;
                // The card still works: reset, bring up, send one good frame.
                let mut d = NetDriver::init(cpu, &f, &mut heap, 16, false)?;
                d.send(cpu, &[frame(60, 1)])?;
                Ok(GuestEnd::Poweroff)
            })).unwrap();
            let ev = run_daemon_loop(&m, v);
            (ev, m.vm.outcome(0))
        };
        prop_assert_eq!(outcome, Some(GuestOutcome::Ended(GuestEnd::Poweroff)));
        prop_assert_eq!(ev, MachineEvent::Poweroff);
        prop_assert_eq!(net.sent(), vec![frame(60, 1)]);
    }
}
