//! `virtio_net`: a guest writing arbitrary transmit chains and receive
//! buffers (descriptor tables, ring entries, indexes, virtio-net headers),
//! common-configuration registers and link changes, against the real
//! virtio-net device over an in-memory backend that feeds it frames of any
//! length.
//!
//! Invariants: no panic; used entries only for offered heads, at most a
//! ring's worth per doorbell; a transmit buffer is returned with length 0, a
//! receive buffer with 0 or a header plus a frame of legal length that fits
//! the chain; every frame taken from the backend is delivered, dropped, held
//! back or lost to a reset, and every frame handed to the backend counted;
//! the backend only gets frames of legal length; the transport status stays
//! consistent; after a reset a well-behaved driver sends and receives.

use colinux_devices::virtio::net::{self, NetDevice, NetDeviceStats, HDR_LEN};
use colinux_devices::virtio::pci::VirtioPciDevice;
use colinux_devices::virtio::{VirtioDevice, F_VERSION_1};
use colinux_net::vnet::MAX_GSO_FRAME_LEN;
use colinux_net::{Offloads, MAX_FRAME_LEN, MIN_FRAME_LEN};
use vm_memory::{Bytes, GuestAddress};

use super::blk::check_status;
use super::input::Input;
use super::ring::{offer, take_used};
use super::{common_write_op, machine, ring_op, suppression_op, with_device, SCRATCH, SCRATCH_LEN};
use crate::common::loopback::{LoopState, Loopback};
use crate::common::{Machine, VirtioDriver, EVENT_IDX};

/// Most guest actions one input performs.
const MAX_OPS: usize = 256;

fn queue_size(b: u8) -> u16 {
    [1, 2, 4, 8, 16, 32, 256, 16][usize::from(b & 7)]
}

fn wanted(b: u8) -> u64 {
    // Device feature bits 0 and 11..13 (offloads), EVENT_IDX, INDIRECT.
    let mut f = !0u64;
    for (bit, flag) in [
        (0u8, 1u64),
        (1, 1 << 11),
        (2, 1 << 12),
        (3, 1 << 13),
        (4, EVENT_IDX),
        (5, 1 << 28),
    ] {
        if b & (1 << bit) == 0 {
            f &= !flag;
        }
    }
    f
}

struct Snap {
    status: u8,
    driver: u64,
    offered: u64,
    stats: NetDeviceStats,
    blocked: bool,
}

fn snap(m: &Machine, slot: u8) -> Snap {
    with_device(m, slot, |dev: &mut VirtioPciDevice<NetDevice>| Snap {
        status: dev.status(),
        driver: dev.driver_features(),
        offered: dev.device().features() | F_VERSION_1,
        stats: dev.device().stats(),
        blocked: dev.device().rx_blocked(),
    })
}

fn frame_len(inp: &mut Input) -> usize {
    match inp.u8() & 7 {
        0 => usize::from(inp.u8() % 20),
        1 => MIN_FRAME_LEN,
        2 => MAX_FRAME_LEN,
        3 => MAX_FRAME_LEN + 1,
        4 => 0x1_0000 + usize::from(inp.u8()),
        _ => 14 + usize::from(inp.u16()) % 1600,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let offloads = Offloads {
        csum: flags & 1 != 0,
        tso4: flags & 2 != 0,
        tso6: flags & 4 != 0,
        tso_ecn: flags & 8 != 0,
    };
    let msix = flags & 16 == 0;
    let (backend, state) = Loopback::with_offloads(offloads);
    let mut m = machine();
    let slot = m.add(Box::new(VirtioPciDevice::new(
        NetDevice::new(Box::new(backend), [2, 0, 0, 0, 0, 1]),
        m.mem.clone(),
        m.sink.clone(),
        Some(11),
    )));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, wanted(inp.u8()), msix, queue_size(inp.u8()));
    let mut layout_known = true;
    let (mut pushed, mut lost) = (0u64, 0u64);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let qi = usize::from(inp.u8() & 1);
        let q = &mut d.queues[qi];
        let size = q.size;
        let before = snap(&m, slot);
        // A doorbell (or backend service) whose used entries get checked.
        let mut kicked = None;
        match inp.u8() % 12 {
            op @ 0..=3 => ring_op(op, &mut inp, &m.mem, q),
            4 => {
                // A transmit chain: a header (from the input) and a frame,
                // split in one or two buffers; or a receive buffer.
                let base = SCRATCH + (u64::from(inp.u16()) * 16) % (SCRATCH_LEN - 0x1000);
                if qi == net::TX_QUEUE {
                    let hdr = inp.bytes(HDR_LEN);
                    m.mem.write_slice(hdr, GuestAddress(base)).unwrap();
                    let len = frame_len(&mut inp).min(0xe00) as u32;
                    let split = inp.u8() & 1 != 0 && size > 1;
                    if split {
                        q.add_chain(
                            &m.mem,
                            &[
                                (base, HDR_LEN as u32, false),
                                (base + 16, len.max(1), false),
                            ],
                        );
                    } else {
                        q.add_chain(&m.mem, &[(base, HDR_LEN as u32 + len, false)]);
                    }
                } else {
                    let len = [HDR_LEN as u32 + 1514, 1, 64, 0xe00][usize::from(inp.u8() & 3)];
                    q.add_chain(&m.mem, &[(base, len, true)]);
                }
            }
            5 => {
                kicked = Some((qi, offer(&m.mem, q)));
                d.kick(&mut m, qi as u16);
            }
            6 => {
                let n = frame_len(&mut inp);
                let fill = inp.u8();
                state.lock().unwrap().to_guest.push_back(vec![fill; n]);
                pushed += 1;
            }
            7 => {
                kicked = Some((net::RX_QUEUE, offer(&m.mem, &d.queues[net::RX_QUEUE])));
                m.root.lock().unwrap().process_backend(slot);
            }
            8 => {
                if !common_write_op(&mut inp, &mut m, &d) {
                    layout_known = false;
                }
            }
            9 => {
                let up = inp.u8() & 1 != 0;
                with_device(&m, slot, |dev: &mut VirtioPciDevice<NetDevice>| {
                    dev.set_link_up(up)
                });
            }
            10 => {
                suppression_op(&mut inp, &m.mem, q);
            }
            _ => {
                d.init(&mut m, wanted(inp.u8()), msix, queue_size(inp.u8()));
                layout_known = true;
            }
        }
        let after = snap(&m, slot);
        check_status(after.status, after.driver, after.offered);
        if before.blocked
            && !after.blocked
            && after.stats.rx_frames == before.stats.rx_frames
            && after.stats.rx_dropped == before.stats.rx_dropped
        {
            // A reset dropped the frame held back for want of buffers.
            lost += 1;
        }
        check_accounting(&state.lock().unwrap(), &after, pushed, lost);
        if let (Some((qi, o)), true) = (kicked, layout_known) {
            let q = &mut d.queues[qi];
            let max = if qi == net::TX_QUEUE { 0 } else { u64::MAX };
            let used = take_used(&m.mem, q, &o, Some(max));
            // Entries of rings the guest let the device overwrite say nothing.
            if qi == net::RX_QUEUE && o.clean {
                for &(id, len) in &used {
                    let len = len as usize;
                    assert!(
                        len == 0
                            || (HDR_LEN + MIN_FRAME_LEN..=HDR_LEN + MAX_FRAME_LEN).contains(&len),
                        "rx head {id} used with length {len}"
                    );
                }
                let delivered = used.iter().filter(|u| u.1 > 0).count() as u64;
                assert_eq!(
                    delivered,
                    after.stats.rx_frames - before.stats.rx_frames,
                    "rx buffers used with data vs frames counted"
                );
            }
        }
    }
    still_works(&mut m, &mut d, &state, msix);
}

/// Frames in and out add up, and only legal lengths reach the backend.
fn check_accounting(s: &LoopState, snap: &Snap, pushed: u64, lost: u64) {
    let st = &snap.stats;
    assert_eq!(
        st.tx_frames,
        (s.from_guest.len() + s.offloaded.len()) as u64,
        "frames counted sent vs frames the backend got"
    );
    for f in &s.from_guest {
        assert!(
            (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&f.len()),
            "plain frame of {} bytes sent",
            f.len()
        );
    }
    for (_, f) in &s.offloaded {
        assert!(
            (MIN_FRAME_LEN..=MAX_GSO_FRAME_LEN).contains(&f.len()),
            "offloaded frame of {} bytes sent",
            f.len()
        );
    }
    let consumed = pushed - s.to_guest.len() as u64;
    assert_eq!(
        consumed,
        st.rx_frames + st.rx_dropped + u64::from(snap.blocked) + lost,
        "frames taken from the backend vs delivered + dropped + held + lost to resets"
    );
}

/// After a reset a well-behaved driver sends a frame and receives one.
fn still_works(
    m: &mut Machine,
    d: &mut VirtioDriver,
    state: &std::sync::Arc<std::sync::Mutex<LoopState>>,
    msix: bool,
) {
    d.init(m, F_VERSION_1 | net::F_MAC | net::F_STATUS, msix, 16);
    {
        let mut s = state.lock().unwrap();
        s.to_guest.clear();
        s.from_guest.clear();
        s.offloaded.clear();
    }
    let frame: Vec<u8> = (0..60u8).collect();
    let buf = SCRATCH;
    m.mem
        .write_slice(&[0u8; HDR_LEN], GuestAddress(buf))
        .unwrap();
    m.mem
        .write_slice(&frame, GuestAddress(buf + HDR_LEN as u64))
        .unwrap();
    d.queues[net::TX_QUEUE].add_chain(&m.mem, &[(buf, (HDR_LEN + frame.len()) as u32, false)]);
    d.kick(m, net::TX_QUEUE as u16);
    assert_eq!(
        d.queues[net::TX_QUEUE].pop_used(&m.mem).map(|u| u.1),
        Some(0)
    );
    assert_eq!(
        state.lock().unwrap().from_guest,
        vec![frame.clone()],
        "frame sent after reset"
    );
    let rx = SCRATCH + 0x1000;
    d.queues[net::RX_QUEUE].add_chain(&m.mem, &[(rx, (HDR_LEN + 1514) as u32, true)]);
    d.kick(m, net::RX_QUEUE as u16);
    state.lock().unwrap().to_guest.push_back(frame.clone());
    m.root.lock().unwrap().process_backend(d.slot);
    let used = d.queues[net::RX_QUEUE].pop_used(&m.mem);
    assert_eq!(
        used.map(|u| u.1 as usize),
        Some(HDR_LEN + frame.len()),
        "frame received after reset"
    );
    let mut got = vec![0u8; frame.len()];
    m.mem
        .read_slice(&mut got, GuestAddress(rx + HDR_LEN as u64))
        .unwrap();
    assert_eq!(got, frame);
}
