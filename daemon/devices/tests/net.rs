//! virtio-net through PCI with an in-memory backend: tx/rx framing, length
//! checks, backend failures, rx back-pressure, link status.

mod common;

use std::sync::{Arc, Mutex};

use colinux_devices::virtio::net::{self, NetDevice, HDR_LEN};
use colinux_devices::virtio::pci::VirtioPciDevice;
use common::loopback::{LoopState, Loopback};
use common::*;
use rstest::rstest;
use vm_memory::{Bytes, GuestAddress};

const MAC: [u8; 6] = [0x00, 0xff, 0x12, 0x34, 0x56, 0x78];
const RX_BUF: u32 = (HDR_LEN + 1518) as u32;

struct Nic {
    m: Machine,
    d: VirtioDriver,
    state: Arc<Mutex<LoopState>>,
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8) ^ seed).collect()
}

fn nic() -> Nic {
    let mut m = Machine::new();
    let (backend, state) = Loopback::new();
    let dev = VirtioPciDevice::new(
        NetDevice::new(Box::new(backend), MAC),
        m.mem.clone(),
        m.sink.clone(),
        Some(11),
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, net::F_MAC | net::F_STATUS, true, 0);
    m.sink.take();
    Nic { m, d, state }
}

impl Nic {
    fn send(&mut self, payload: &[u8]) {
        let hdr = self.d.alloc(HDR_LEN);
        self.m
            .mem
            .write_slice(&[0u8; HDR_LEN], GuestAddress(hdr))
            .unwrap();
        let mut bufs = vec![(hdr, HDR_LEN as u32, false)];
        if !payload.is_empty() {
            let a = self.d.alloc(payload.len());
            self.m.mem.write_slice(payload, GuestAddress(a)).unwrap();
            bufs.push((a, payload.len() as u32, false));
        }
        self.d.queues[net::TX_QUEUE].add_chain(&self.m.mem, &bufs);
    }

    fn post_rx(&mut self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let a = self.d.alloc(RX_BUF as usize);
                self.d.queues[net::RX_QUEUE].add_chain(&self.m.mem, &[(a, RX_BUF, true)]);
                a
            })
            .collect()
    }

    fn pump(&mut self) {
        let slot = self.d.slot;
        self.m.root.lock().unwrap().process_backend(slot);
    }

    fn stats(&mut self) -> net::NetDeviceStats {
        let slot = self.d.slot;
        let root = self.m.root.lock().unwrap();
        let mut guard = root.device(slot).unwrap();
        let dev = guard.as_any_mut().unwrap();
        dev.downcast_mut::<VirtioPciDevice<NetDevice>>()
            .unwrap()
            .device()
            .stats()
    }

    fn used(&mut self, q: usize) -> Vec<(u32, u32)> {
        std::iter::from_fn(|| self.d.queues[q].pop_used(&self.m.mem)).collect()
    }
}

#[test]
fn config_space_has_mac_and_link_up() {
    let mut n = nic();
    let mac: Vec<u8> = (0..6)
        .map(|i| n.d.device_cfg(&mut n.m, i, 1) as u8)
        .collect();
    assert_eq!(mac, MAC);
    assert_eq!(n.d.device_cfg(&mut n.m, 6, 2), u64::from(net::S_LINK_UP));
    assert_eq!(
        n.m.cfg_read(n.d.slot, 2, 2),
        0x1041,
        "virtio-net modern device ID"
    );
    assert_eq!(
        n.m.cfg_read(n.d.slot, 0x0a, 2),
        0x0200,
        "Ethernet controller class"
    );
}

#[test]
fn tx_frames_reach_the_backend_with_one_interrupt() {
    let mut n = nic();
    let a = frame(60, 1);
    let b = frame(1514, 2);
    n.send(&a);
    n.send(&b);
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    assert_eq!(n.state.lock().unwrap().from_guest, vec![a, b]);
    assert_eq!(n.used(net::TX_QUEUE).len(), 2);
    assert_eq!(n.m.sink.msi_data(), vec![0x32], "tx queue vector 2, once");
    assert_eq!(n.stats().tx_frames, 2);
}

#[rstest]
#[case::empty(0)]
#[case::runt(13)]
#[case::giant(colinux_net::MAX_FRAME_LEN + 1)]
#[case::jumbo(9000)]
fn tx_bad_lengths_are_counted_and_dropped(#[case] len: usize) {
    let mut n = nic();
    n.send(&frame(len, 3));
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    assert!(n.state.lock().unwrap().from_guest.is_empty());
    assert_eq!(
        n.used(net::TX_QUEUE).len(),
        1,
        "the buffer still goes back to the guest"
    );
    assert_eq!(n.stats().tx_dropped, 1);
}

#[test]
fn tx_chain_with_a_writable_buffer_is_dropped() {
    let mut n = nic();
    let a = n.d.alloc(80);
    n.d.queues[net::TX_QUEUE].add_chain(&n.m.mem, &[(a, 12, false), (a + 16, 60, true)]);
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    assert!(n.state.lock().unwrap().from_guest.is_empty());
    assert_eq!(n.stats().tx_dropped, 1);
}

#[test]
fn rx_frames_land_in_guest_buffers_with_header() {
    let mut n = nic();
    let bufs = n.post_rx(4);
    n.d.kick(&mut n.m, net::RX_QUEUE as u16);
    let frames = vec![frame(42, 4), frame(1518, 5), frame(14, 6)];
    n.state.lock().unwrap().to_guest.extend(frames.clone());
    n.pump();
    let used = n.used(net::RX_QUEUE);
    assert_eq!(used.len(), 3);
    for (i, ((id, len), f)) in used.iter().zip(&frames).enumerate() {
        assert_eq!(*id, i as u32);
        assert_eq!(*len as usize, HDR_LEN + f.len());
        let mut got = vec![0u8; HDR_LEN + f.len()];
        n.m.mem.read_slice(&mut got, GuestAddress(bufs[i])).unwrap();
        assert_eq!(&got[..10], &[0u8; 10], "no offloads in the header");
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
        assert_eq!(&got[HDR_LEN..], &f[..]);
    }
    assert_eq!(
        n.m.sink.msi_data(),
        vec![0x31],
        "rx vector 1, once for the batch"
    );
    assert_eq!(n.stats().rx_frames, 3);
}

#[test]
fn rx_bad_lengths_from_the_backend_are_dropped() {
    let mut n = nic();
    n.post_rx(2);
    n.state
        .lock()
        .unwrap()
        .to_guest
        .extend([frame(5, 0), frame(4000, 0), frame(64, 7)]);
    n.pump();
    let used = n.used(net::RX_QUEUE);
    assert_eq!(used, vec![(0, (HDR_LEN + 64) as u32)]);
    let s = n.stats();
    assert_eq!((s.rx_frames, s.rx_dropped), (1, 2));
}

#[test]
fn rx_waits_for_guest_buffers_and_withdraws_its_fd() {
    let mut n = nic();
    n.state
        .lock()
        .unwrap()
        .to_guest
        .extend([frame(60, 1), frame(61, 2)]);
    assert_eq!(n.m.root.lock().unwrap().backend_fds().len(), 1);
    n.pump();
    assert!(n.used(net::RX_QUEUE).is_empty());
    assert!(
        n.m.root.lock().unwrap().backend_fds().is_empty(),
        "no buffers: fd withdrawn"
    );
    assert_eq!(n.stats().rx_dropped, 0, "held, not dropped");
    n.post_rx(2);
    n.d.kick(&mut n.m, net::RX_QUEUE as u16);
    let used = n.used(net::RX_QUEUE);
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        vec![(HDR_LEN + 60) as u32, (HDR_LEN + 61) as u32]
    );
    assert_eq!(
        n.m.root.lock().unwrap().backend_fds().len(),
        1,
        "fd back after delivery"
    );
}

#[test]
fn a_held_frame_survives_a_transmit_before_the_guest_adds_buffers() {
    let mut n = nic();
    let held = frame(1500, 9);
    n.state.lock().unwrap().to_guest.push_back(held.clone());
    n.pump();
    assert!(n.used(net::RX_QUEUE).is_empty(), "no buffers yet: held");
    let sent = frame(1514, 3);
    n.send(&sent);
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    assert_eq!(n.state.lock().unwrap().from_guest, vec![sent]);
    let bufs = n.post_rx(1);
    n.d.kick(&mut n.m, net::RX_QUEUE as u16);
    assert_eq!(
        n.used(net::RX_QUEUE),
        vec![(0, (HDR_LEN + held.len()) as u32)]
    );
    let mut got = vec![0u8; held.len()];
    n.m.mem
        .read_slice(&mut got, GuestAddress(bufs[0] + HDR_LEN as u64))
        .unwrap();
    assert_eq!(got, held, "the held frame, not the transmitted one");
}

#[test]
fn rx_buffer_too_small_drops_the_frame_only() {
    let mut n = nic();
    let a = n.d.alloc(100);
    n.d.queues[net::RX_QUEUE].add_chain(&n.m.mem, &[(a, 40, true)]);
    n.post_rx(1);
    n.state
        .lock()
        .unwrap()
        .to_guest
        .extend([frame(100, 1), frame(100, 2)]);
    n.pump();
    assert_eq!(
        n.used(net::RX_QUEUE),
        vec![(0, 0), (1, (HDR_LEN + 100) as u32)]
    );
    let s = n.stats();
    assert_eq!((s.rx_frames, s.rx_dropped), (1, 1));
}

#[test]
fn backend_failures_are_counted_and_the_guest_keeps_running() {
    let mut n = nic();
    n.state.lock().unwrap().fail_send = true;
    n.send(&frame(60, 1));
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    assert_eq!(n.used(net::TX_QUEUE).len(), 1);
    n.state.lock().unwrap().fail_recv = true;
    n.post_rx(1);
    n.pump();
    let s = n.stats();
    assert_eq!((s.tx_dropped, s.backend_errors), (1, 2));
    let mut st = n.state.lock().unwrap();
    st.fail_send = false;
    st.fail_recv = false;
    st.to_guest.push_back(frame(70, 9));
    drop(st);
    n.send(&frame(60, 2));
    n.d.kick(&mut n.m, net::TX_QUEUE as u16);
    n.pump();
    assert_eq!(n.state.lock().unwrap().from_guest.len(), 1);
    assert_eq!(n.used(net::RX_QUEUE).len(), 1);
}

#[test]
fn frames_before_driver_ok_are_drained_and_dropped() {
    let m = Machine::new();
    let (backend, state) = Loopback::new();
    let dev = VirtioPciDevice::new(
        NetDevice::new(Box::new(backend), MAC),
        m.mem.clone(),
        m.sink.clone(),
        None,
    );
    let slot = m.add(Box::new(dev));
    state
        .lock()
        .unwrap()
        .to_guest
        .extend([frame(60, 1), frame(60, 2)]);
    m.root.lock().unwrap().process_backend(slot);
    assert!(state.lock().unwrap().to_guest.is_empty());
    assert!(m.sink.take().is_empty());
}

#[test]
fn link_change_updates_status_and_sends_config_interrupt() {
    let mut n = nic();
    let gen0 = n.d.common_read(&mut n.m, 21, 1);
    {
        let slot = n.d.slot;
        let root = n.m.root.lock().unwrap();
        let mut guard = root.device(slot).unwrap();
        let dev = guard.as_any_mut().unwrap();
        dev.downcast_mut::<VirtioPciDevice<NetDevice>>()
            .unwrap()
            .set_link_up(false);
    }
    assert_eq!(n.d.device_cfg(&mut n.m, 6, 2), 0, "link down");
    assert_ne!(
        n.d.common_read(&mut n.m, 21, 1),
        gen0,
        "config generation moved"
    );
    assert_eq!(n.m.sink.msi_data(), vec![0x30], "config vector 0");
}
