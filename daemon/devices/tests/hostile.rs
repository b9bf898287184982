//! Property tests with a hostile guest: random descriptor tables (loops, bad
//! next indexes, zero lengths, buffers in the RAM hole or past its end,
//! indirect tables full of garbage, wrong directions, bogus avail indexes) and
//! random register writes. The devices must not panic or hang, must only
//! return heads that exist, and must still work for a well-behaved driver after
//! a reset.

mod common;

use colinux_devices::block::DiskImage;
use colinux_devices::virtio::blk::{self, BlockDevice};
use colinux_devices::virtio::net::{self, NetDevice, HDR_LEN};
use colinux_devices::virtio::pci::{VirtioPciDevice, BAR_SIZE};
use common::loopback::Loopback;
use common::*;
use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress};

const QSIZE: u16 = 16;
const SCRATCH: u64 = 0x4_0000;
const SCRATCH_LEN: usize = 0x2000;

#[derive(Debug, Clone)]
struct RawDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0..SCRATCH_LEN as u64).prop_map(|o| SCRATCH + o),
        1 => Just(RAM_LOW.1 as u64 - 8),                          // runs into the hole
        1 => RAM_LOW.1 as u64..RAM_HIGH.0,                      // the hole
        1 => RAM_HIGH.0..RAM_HIGH.0 + RAM_HIGH.1 as u64,        // high RAM
        1 => Just(RAM_HIGH.0 + RAM_HIGH.1 as u64 - 4),            // runs off the end
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        2u32..40,
        Just(16),
        Just(512),
        Just(4096),
        Just(0x1_0000),
        any::<u32>()
    ]
}

fn desc() -> impl Strategy<Value = RawDesc> {
    let flags = prop_oneof![8 => 0u16..8, 1 => any::<u16>()];
    (addr(), len(), flags, 0u16..20).prop_map(|(addr, len, flags, next)| RawDesc {
        addr,
        len,
        flags,
        next,
    })
}

#[derive(Debug, Clone)]
struct Hostile {
    descs: Vec<RawDesc>,
    heads: Vec<u16>,
    avail_idx: Option<u16>,
    scratch: Vec<u8>,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        prop::collection::vec(desc(), QSIZE as usize),
        prop::collection::vec(0u16..20, 0..=QSIZE as usize),
        prop::option::weighted(0.15, any::<u16>()),
        prop::collection::vec(any::<u8>(), SCRATCH_LEN),
    )
        .prop_map(|(descs, heads, avail_idx, scratch)| Hostile {
            descs,
            heads,
            avail_idx,
            scratch,
        })
}

/// Writes the hostile table and ring into queue `q`; returns how many entries
/// the avail index claims.
fn plant(m: &Machine, q: &mut DriverQueue, h: &Hostile) -> u16 {
    m.mem
        .write_slice(&h.scratch, GuestAddress(SCRATCH))
        .unwrap();
    for (i, d) in h.descs.iter().enumerate() {
        q.write_desc(&m.mem, i as u16, d.addr, d.len, d.flags, d.next);
    }
    for &head in &h.heads {
        q.publish(&m.mem, head);
    }
    if let Some(idx) = h.avail_idx {
        m.mem.write_obj(idx, GuestAddress(q.avail + 2)).unwrap();
        q.avail_idx = idx;
    }
    q.avail_idx
}

fn check_used(m: &Machine, q: &mut DriverQueue, claimed: u16) -> Vec<(u32, u32)> {
    let used: Vec<_> = std::iter::from_fn(|| q.pop_used(&m.mem))
        .take(1000)
        .collect();
    assert!(
        used.len() <= usize::from(claimed.min(QSIZE)),
        "more completions ({}) than offered",
        used.len()
    );
    for &(id, _) in &used {
        assert!(
            id < u32::from(QSIZE),
            "used id {id} is not a descriptor of the queue"
        );
    }
    used
}

fn blk_machine(dir: &TempDir) -> (Machine, VirtioDriver) {
    let path = dir.file("h.img", &vec![0x5au8; 64 * 512]);
    let mut m = Machine::new();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(DiskImage::open(&path, false).unwrap(), "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, !0, true, QSIZE);
    (m, d)
}

/// A well-formed read of sector 0 succeeds (the device is not wedged).
fn blk_still_works(m: &mut Machine, d: &mut VirtioDriver) {
    d.init(m, !0, true, QSIZE);
    let (hdr, data, status) = (0x6_0000u64, 0x6_1000u64, 0x6_2000u64);
    m.mem.write_slice(&[0u8; 16], GuestAddress(hdr)).unwrap();
    m.mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
    d.queues[0].add_chain(
        &m.mem,
        &[(hdr, 16, false), (data, 512, true), (status, 1, true)],
    );
    d.kick(m, 0);
    assert_eq!(d.queues[0].pop_used(&m.mem).map(|u| u.1), Some(513));
    assert_eq!(
        m.mem.read_obj::<u8>(GuestAddress(status)).unwrap(),
        blk::S_OK
    );
    let mut buf = [0u8; 512];
    m.mem.read_slice(&mut buf, GuestAddress(data)).unwrap();
    assert!(buf.iter().all(|&b| b == 0x5a));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn blk_survives_hostile_chains(h in hostile()) {
        let dir = TempDir::new();
        let (mut m, mut d) = blk_machine(&dir);
        let claimed = plant(&m, &mut d.queues[0], &h);
        d.kick(&mut m, 0);
        check_used(&m, &mut d.queues[0], claimed);
        blk_still_works(&mut m, &mut d);
    }

    #[test]
    fn net_tx_survives_hostile_chains(h in hostile()) {
        let mut m = Machine::new();
        let (backend, state) = Loopback::new();
        let slot = m.add(Box::new(VirtioPciDevice::new(NetDevice::new(Box::new(backend), [2, 0, 0, 0, 0, 1]), m.mem.clone(), m.sink.clone(), None)));
        let mut d = VirtioDriver::probe(&mut m, slot);
        d.init(&mut m, !0, true, QSIZE);
        let claimed = plant(&m, &mut d.queues[net::TX_QUEUE], &h);
        d.kick(&mut m, net::TX_QUEUE as u16);
        check_used(&m, &mut d.queues[net::TX_QUEUE], claimed);
        for f in &state.lock().unwrap().from_guest {
            prop_assert!((colinux_net::MIN_FRAME_LEN..=colinux_net::MAX_FRAME_LEN).contains(&f.len()));
        }
    }

    #[test]
    fn net_rx_survives_hostile_chains(h in hostile(), lens in prop::collection::vec(prop_oneof![0usize..20, 14usize..1600, Just(1522), Just(1523)], 0..24)) {
        let mut m = Machine::new();
        let (backend, state) = Loopback::new();
        let slot = m.add(Box::new(VirtioPciDevice::new(NetDevice::new(Box::new(backend), [2, 0, 0, 0, 0, 1]), m.mem.clone(), m.sink.clone(), None)));
        let mut d = VirtioDriver::probe(&mut m, slot);
        d.init(&mut m, !0, true, QSIZE);
        state.lock().unwrap().to_guest.extend(lens.iter().map(|&n| vec![0xab; n]));
        let claimed = plant(&m, &mut d.queues[net::RX_QUEUE], &h);
        m.root.lock().unwrap().process_backend(slot);
        d.kick(&mut m, net::RX_QUEUE as u16);
        let used = check_used(&m, &mut d.queues[net::RX_QUEUE], claimed);
        for &(_, len) in &used {
            prop_assert!(len == 0 || (len as usize >= HDR_LEN + 14 && len as usize <= HDR_LEN + colinux_net::MAX_FRAME_LEN));
        }
        let consumed = lens.len() - state.lock().unwrap().to_guest.len();
        let stats = {
            let root = m.root.lock().unwrap();
            let mut guard = root.device(slot).unwrap();
            let dev = guard.as_any_mut().unwrap();
            let nic = dev.downcast_mut::<VirtioPciDevice<NetDevice>>().unwrap().device();
            (nic.stats(), nic.rx_blocked())
        };
        let (s, blocked) = stats;
        prop_assert_eq!(s.rx_frames + s.rx_dropped + u64::from(blocked), consumed as u64);
        prop_assert_eq!(s.rx_frames as usize, used.iter().filter(|u| u.1 > 0).count());
    }
}

#[derive(Debug, Clone)]
enum RegOp {
    Config(u8, usize, u32),
    Bar(u64, usize, u64),
    BarRead(u64, usize),
    Kick(u16),
}

fn reg_op() -> impl Strategy<Value = RegOp> {
    let width = prop_oneof![Just(1usize), Just(2), Just(4), Just(8)];
    prop_oneof![
        1 => (any::<u8>(), prop_oneof![Just(1usize), Just(2), Just(4)], any::<u32>()).prop_map(|(r, l, v)| RegOp::Config(r, l, v)),
        3 => (prop_oneof![0u64..0x80, 0x1000u64..0x1004, 0x2000u64..0x2040, 0x3000u64..0x3010, 0x4000u64..0x4040, 0x6000u64..0x6008, 0..BAR_SIZE], width.clone(), any::<u64>())
            .prop_map(|(o, l, v)| RegOp::Bar(o, l, v)),
        1 => (0..BAR_SIZE, width).prop_map(|(o, l)| RegOp::BarRead(o, l)),
        1 => (0u16..4).prop_map(RegOp::Kick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random config-space and BAR 0 traffic (including BAR moves, MSI-X
    /// toggling, status games and doorbells on half-configured queues) never
    /// panics, and a fresh probe + init afterwards yields a working disk.
    #[test]
    fn transport_survives_random_register_traffic(ops in prop::collection::vec(reg_op(), 1..80)) {
        let dir = TempDir::new();
        let (mut m, d) = blk_machine(&dir);
        let slot = d.slot;
        for op in ops {
            let bar0 = {
                let lo = m.cfg_read(slot, 0x10, 4);
                u64::from(m.cfg_read(slot, 0x14, 4)) << 32 | u64::from(lo & !0xf)
            };
            match op {
                RegOp::Config(r, l, v) => m.cfg_write(slot, r & !(l as u8 - 1), l, v),
                RegOp::Bar(o, l, v) => m.mmio_write(bar0.wrapping_add(o), l, v),
                RegOp::BarRead(o, l) => { m.mmio_read(bar0.wrapping_add(o), l); }
                RegOp::Kick(q) => d.kick(&mut m, q),
            }
        }
        // Put the BAR back where firmware placed it and start over like a driver.
        m.cfg_write(slot, 0x10, 4, (d.layout.bar0 as u32) | 0b100);
        m.cfg_write(slot, 0x14, 4, (d.layout.bar0 >> 32) as u32);
        let mut d2 = VirtioDriver::probe(&mut m, slot);
        blk_still_works(&mut m, &mut d2);
    }
}

// ---- the named hostile shapes, with exact expectations ----

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
const HDR: u64 = 0x5_0000;
const DATA: u64 = 0x5_1000;
const STATUS: u64 = 0x5_2000;
const TABLE: u64 = 0x5_3000;

fn blk_stats(m: &Machine, slot: u8) -> blk::BlockStats {
    let root = m.root.lock().unwrap();
    let mut guard = root.device(slot).unwrap();
    let dev = guard.as_any_mut().unwrap();
    dev.downcast_mut::<VirtioPciDevice<BlockDevice>>()
        .unwrap()
        .device()
        .stats()
}

/// Each case writes descriptors 0.. (or an indirect table) describing a read
/// of sector 0 gone wrong; `None` = the chain must be dropped unanswered,
/// `Some(s)` = status `s` must be written.
#[rstest::rstest]
#[case::loop_of_two(vec![(HDR, 16, F_NEXT, 1), (DATA, 512, F_WRITE | F_NEXT, 0)], None)]
#[case::self_loop(vec![(HDR, 16, F_NEXT, 0)], None)]
#[case::next_past_table(vec![(HDR, 16, F_NEXT, 40)], None)]
#[case::zero_length_data(vec![(HDR, 16, F_NEXT, 1), (DATA, 0, F_WRITE | F_NEXT, 2), (STATUS, 1, F_WRITE, 0)], None)]
#[case::zero_length_status(vec![(HDR, 16, F_NEXT, 1), (DATA, 512, F_WRITE | F_NEXT, 2), (STATUS, 0, F_WRITE, 0)], None)]
#[case::data_in_ram_hole(vec![(HDR, 16, F_NEXT, 1), (0x9_0000, 512, F_WRITE | F_NEXT, 2), (STATUS, 1, F_WRITE, 0)], None)]
#[case::data_across_ram_end(vec![(HDR, 16, F_NEXT, 1), (0x17_ff00, 512, F_WRITE | F_NEXT, 2), (STATUS, 1, F_WRITE, 0)], None)]
#[case::address_wraps(vec![(HDR, 16, F_NEXT, 1), (u64::MAX - 8, 512, F_WRITE | F_NEXT, 2), (STATUS, 1, F_WRITE, 0)], None)]
#[case::readable_after_writable(vec![(HDR, 16, F_NEXT, 1), (STATUS, 1, F_WRITE | F_NEXT, 2), (DATA, 512, F_NEXT, 0)], None)]
#[case::status_not_writable(vec![(HDR, 16, F_NEXT, 1), (STATUS, 1, 0, 0)], None)]
#[case::short_header(vec![(HDR, 8, F_NEXT, 1), (STATUS, 1, F_WRITE, 0)], Some(blk::S_IOERR))]
#[case::partial_sector_read(vec![(HDR, 16, F_NEXT, 1), (DATA, 100, F_WRITE | F_NEXT, 2), (STATUS, 1, F_WRITE, 0)], Some(blk::S_IOERR))]
#[case::huge_read(vec![(HDR, 16, F_NEXT, 1), (DATA, 0x1_0000, F_WRITE | F_NEXT, 2), (DATA, 0x1_0000, F_WRITE | F_NEXT, 3), (STATUS, 1, F_WRITE, 0)], Some(blk::S_IOERR))]
#[case::indirect_bad_table_len(vec![(TABLE, 24, F_INDIRECT, 0)], None)]
#[case::indirect_nested(vec![(TABLE, 16, F_INDIRECT, 0)], None)]
#[case::indirect_good(vec![(TABLE + 0x100, 48, F_INDIRECT, 0)], Some(blk::S_OK))]
fn named_hostile_chains(#[case] chain: Vec<(u64, u32, u16, u16)>, #[case] expect: Option<u8>) {
    let dir = TempDir::new();
    let (mut m, mut d) = blk_machine(&dir);
    m.mem.write_slice(&[0u8; 16], GuestAddress(HDR)).unwrap();
    m.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    // Indirect tables: at TABLE a nested indirect descriptor; at TABLE+0x100 a
    // well-formed read (header, data, status).
    let q = &d.queues[0];
    let table = RawRing {
        desc: TABLE,
        ..q.ring
    };
    table
        .write_desc(&m.mem, 0, TABLE + 0x100, 48, F_INDIRECT, 0)
        .unwrap();
    let good = RawRing {
        desc: TABLE + 0x100,
        ..q.ring
    };
    good.write_desc(&m.mem, 0, HDR, 16, F_NEXT, 1).unwrap();
    good.write_desc(&m.mem, 1, DATA, 512, F_WRITE | F_NEXT, 2)
        .unwrap();
    good.write_desc(&m.mem, 2, STATUS, 1, F_WRITE, 0).unwrap();
    for (i, &(a, l, f, n)) in chain.iter().enumerate() {
        d.queues[0].write_desc(&m.mem, i as u16, a, l, f, n);
    }
    d.queues[0].publish(&m.mem, 0);
    d.kick(&mut m, 0);
    let used = d.queues[0]
        .pop_used(&m.mem)
        .expect("the head always comes back");
    assert_eq!(used.0, 0);
    let status: u8 = m.mem.read_obj(GuestAddress(STATUS)).unwrap();
    let stats = blk_stats(&m, d.slot);
    match expect {
        None => {
            assert_eq!(used.1, 0);
            assert_eq!(status, 0xee, "no status written for a dropped chain");
            assert_eq!(stats.malformed, 1);
        }
        Some(s) => {
            assert_eq!(status, s);
            assert_eq!(stats.malformed, 0);
        }
    }
    blk_still_works(&mut m, &mut d);
}
