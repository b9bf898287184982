//! virtio-net guest-to-host offloads over an in-memory backend: which features
//! are offered, TSO super-frames and partial checksums passed on with their
//! header, and headers the driver had no right to send counted and dropped.

mod common;

use std::sync::{Arc, Mutex};

use colinux_devices::virtio::net::{self, NetDevice, HDR_LEN};
use colinux_devices::virtio::pci::VirtioPciDevice;
use colinux_net::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, MAX_GSO_FRAME_LEN};
use colinux_net::{Offloads, VnetHdr, MAX_FRAME_LEN};
use common::loopback::{LoopState, Loopback};
use common::*;
use proptest::prelude::*;
use rstest::rstest;
use vm_memory::{Bytes, GuestAddress};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
const OFFLOAD_BITS: u64 = net::F_CSUM | net::F_HOST_TSO4 | net::F_HOST_TSO6 | net::F_HOST_ECN;

struct Nic {
    m: Machine,
    d: VirtioDriver,
    state: Arc<Mutex<LoopState>>,
    negotiated: u64,
}

/// A card over a loopback claiming `backend`, driven by a driver that wants `wanted`.
fn nic(backend: Offloads, wanted: u64) -> Nic {
    let mut m = Machine::new();
    let (lb, state) = Loopback::with_offloads(backend);
    let dev = VirtioPciDevice::new(
        NetDevice::new(Box::new(lb), MAC),
        m.mem.clone(),
        m.sink.clone(),
        None,
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    let negotiated = d.init(&mut m, wanted, true, 0);
    Nic {
        m,
        d,
        state,
        negotiated,
    }
}

/// An IPv4 (or IPv6) TCP frame of `len` bytes.
fn tcp_frame(v6: bool, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    if v6 {
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[20] = 6;
    } else {
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
    }
    f
}

fn tso(v6: bool) -> VnetHdr {
    let l4 = if v6 { 54 } else { 34 };
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: l4 + 20,
        gso_size: 1448,
        csum_start: l4,
        csum_offset: 16,
    }
}

impl Nic {
    /// Queues one tx chain: the 12-byte header, then the frame cut in pieces
    /// of at most 4096 bytes (as a guest's scatter-gather list would be).
    fn send(&mut self, hdr: &VnetHdr, frame: &[u8]) {
        let mut head = [0u8; HDR_LEN];
        head[..10].copy_from_slice(&hdr.to_bytes());
        let h = self.d.alloc(HDR_LEN);
        self.m.mem.write_slice(&head, GuestAddress(h)).unwrap();
        let mut bufs = vec![(h, HDR_LEN as u32, false)];
        for piece in frame.chunks(4096) {
            let a = self.d.alloc(piece.len());
            self.m.mem.write_slice(piece, GuestAddress(a)).unwrap();
            bufs.push((a, piece.len() as u32, false));
        }
        self.d.queues[net::TX_QUEUE].add_chain(&self.m.mem, &bufs);
    }

    fn kick_tx(&mut self) -> usize {
        self.d.kick(&mut self.m, net::TX_QUEUE as u16);
        std::iter::from_fn(|| self.d.queues[net::TX_QUEUE].pop_used(&self.m.mem)).count()
    }

    fn stats(&mut self) -> net::NetDeviceStats {
        let slot = self.d.slot;
        let root = self.m.root.lock().unwrap();
        let mut guard = root.device(slot).unwrap();
        let dev = guard.as_any_mut().unwrap();
        let nic = dev
            .downcast_mut::<VirtioPciDevice<NetDevice>>()
            .unwrap()
            .device();
        nic.stats()
    }
}

#[test]
fn offloads_are_offered_only_when_the_backend_takes_them() {
    let plain = nic(Offloads::NONE, !0);
    assert_eq!(plain.negotiated & OFFLOAD_BITS, 0);
    let full = nic(Offloads::ALL, !0);
    assert_eq!(full.negotiated & OFFLOAD_BITS, OFFLOAD_BITS);
    // Segmentation without checksum offload is not a valid virtio set.
    let no_csum = Offloads {
        csum: false,
        ..Offloads::ALL
    };
    assert_eq!(nic(no_csum, !0).negotiated & OFFLOAD_BITS, 0);
}

#[rstest]
#[case::v4(false)]
#[case::v6(true)]
fn tso_super_frames_reach_the_backend_with_their_header(#[case] v6: bool) {
    let mut n = nic(Offloads::ALL, !0);
    let big = tcp_frame(v6, 60_000);
    let max = tcp_frame(v6, MAX_GSO_FRAME_LEN);
    let hdr = tso(v6);
    n.send(&hdr, &big);
    n.send(&hdr, &max);
    assert_eq!(n.kick_tx(), 2);
    let s = n.state.lock().unwrap();
    assert!(s.from_guest.is_empty());
    assert_eq!(s.offloaded, vec![(hdr, big), (hdr, max)]);
    drop(s);
    let st = n.stats();
    assert_eq!((st.tx_frames, st.tx_gso_frames, st.tx_dropped), (2, 2, 0));
}

#[test]
fn plain_and_partial_checksum_frames_take_their_own_paths() {
    let mut n = nic(Offloads::ALL, !0);
    let f = tcp_frame(false, 1514);
    let partial = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    n.send(&VnetHdr::default(), &f);
    n.send(&partial, &f);
    assert_eq!(n.kick_tx(), 2);
    let s = n.state.lock().unwrap();
    assert_eq!(s.from_guest, vec![f.clone()]);
    assert_eq!(s.offloaded, vec![(partial, f)]);
}

#[rstest]
#[case::nothing_negotiated(0, tso(false))]
#[case::csum_only(net::F_CSUM, tso(false))]
#[case::tso4_only(net::F_CSUM | net::F_HOST_TSO4, tso(true))]
#[case::no_ecn(net::F_CSUM | net::F_HOST_TSO4, VnetHdr { gso_type: GSO_TCPV4 | GSO_ECN, ..tso(false) })]
#[case::csum_not_negotiated(0, VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::default() })]
fn headers_beyond_the_negotiated_features_are_dropped(#[case] wanted: u64, #[case] hdr: VnetHdr) {
    let mut n = nic(Offloads::ALL, wanted);
    let v6 = hdr.gso_type & !GSO_ECN == GSO_TCPV6;
    n.send(&hdr, &tcp_frame(v6, 1000));
    assert_eq!(n.kick_tx(), 1, "the buffer still goes back to the guest");
    let s = n.state.lock().unwrap();
    assert!(s.from_guest.is_empty() && s.offloaded.is_empty());
    drop(s);
    let st = n.stats();
    assert_eq!((st.tx_dropped, st.tx_bad_header), (1, 1));
}

#[test]
fn frame_length_limits_follow_the_header() {
    let mut n = nic(Offloads::ALL, !0);
    // Too long even for a super-frame: dropped before reading it.
    n.send(&tso(false), &tcp_frame(false, MAX_GSO_FRAME_LEN + 1));
    // A plain frame stays wire-sized although TSO is on.
    n.send(&VnetHdr::default(), &tcp_frame(false, MAX_FRAME_LEN + 1));
    assert_eq!(n.kick_tx(), 2);
    assert_eq!(n.stats().tx_dropped, 2);
    // Without offloads negotiated a 60 000-byte chain is refused outright.
    let mut plain = nic(Offloads::ALL, 0);
    plain.send(&VnetHdr::default(), &tcp_frame(false, 60_000));
    assert_eq!(plain.kick_tx(), 1);
    assert_eq!(plain.stats().tx_dropped, 1);
}

#[test]
fn reset_forgets_the_negotiated_offloads() {
    let mut n = nic(Offloads::ALL, !0);
    n.d.init(&mut n.m, net::F_MAC, true, 0);
    n.send(&tso(false), &tcp_frame(false, 1000));
    assert_eq!(n.kick_tx(), 1);
    assert_eq!(n.stats().tx_bad_header, 1);
    assert!(n.state.lock().unwrap().offloaded.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever header and length a guest sends, every buffer comes back, the
    /// counters add up and the backend only sees headers that pass the check.
    #[test]
    fn hostile_headers_are_dropped_and_counted(
        sends in prop::collection::vec((any::<[u8; 10]>(), prop_oneof![0usize..100, 1400usize..1600, 60_000usize..66_000], any::<bool>()), 1..6),
        wanted in prop_oneof![Just(0u64), Just(net::F_CSUM), Just(!0u64)],
    ) {
        let mut n = nic(Offloads::ALL, wanted);
        let allowed = Offloads {
            csum: n.negotiated & net::F_CSUM != 0,
            tso4: n.negotiated & net::F_HOST_TSO4 != 0,
            tso6: n.negotiated & net::F_HOST_TSO6 != 0,
            tso_ecn: n.negotiated & net::F_HOST_ECN != 0,
        };
        for (head, len, v6) in &sends {
            let f = tcp_frame(*v6, (*len).max(24));
            n.send(&VnetHdr::parse(head), &f[..*len.min(&f.len())]);
        }
        prop_assert_eq!(n.kick_tx(), sends.len());
        let st = n.stats();
        prop_assert_eq!(st.tx_frames + st.tx_dropped, sends.len() as u64);
        let s = n.state.lock().unwrap();
        prop_assert_eq!(s.from_guest.len() + s.offloaded.len(), st.tx_frames as usize);
        for f in &s.from_guest {
            prop_assert!((14..=MAX_FRAME_LEN).contains(&f.len()));
        }
        for (h, f) in &s.offloaded {
            prop_assert!(!h.is_plain());
            prop_assert_eq!(h.check_tx(f, allowed), Ok(()));
        }
    }
}
