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
    #![proptest_config(ProptestConfig::with_cases(cases(40)))]

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
