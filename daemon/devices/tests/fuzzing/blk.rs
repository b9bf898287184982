//! `virtio_blk`: a guest writing arbitrary descriptor tables, available ring
//! entries and indexes, request headers and common-configuration registers,
//! then ringing the doorbell, against the real virtio-blk device over an
//! in-memory disk.
//!
//! Invariants: no panic; used entries only for heads the guest offered, at
//! most a ring's worth per doorbell, never longer than the chain's writable
//! bytes; every popped chain counted as a request or a malformed chain; the
//! backend only sees whole sectors inside the disk, and a read-only disk is
//! never modified; the transport status stays consistent; after a reset a
//! well-behaved driver gets correct reads, writes and its serial.

use colinux_devices::virtio::blk::{self, BlockDevice, BlockStats};
use colinux_devices::virtio::pci::VirtioPciDevice;
use colinux_devices::virtio::{VirtioDevice, F_VERSION_1};
use vm_memory::{Bytes, GuestAddress};

use super::input::Input;
use super::memdisk::MemDisk;
use super::ring::{offer, take_used};
use super::{common_write_op, machine, ring_op, suppression_op, with_device, SCRATCH, SCRATCH_LEN};
use crate::common::{Machine, VirtioDriver, EVENT_IDX};

/// Most guest actions one input performs.
const MAX_OPS: usize = 256;
/// Request types, including unknown ones.
const TYPES: [u32; 8] = [
    blk::T_IN,
    blk::T_OUT,
    blk::T_FLUSH,
    blk::T_GET_ID,
    blk::T_DISCARD,
    blk::T_WRITE_ZEROES,
    2,
    u32::MAX,
];

fn queue_size(b: u8) -> u16 {
    [1, 2, 4, 8, 16, 32, 256, 16][usize::from(b & 7)]
}

fn wanted(b: u8) -> u64 {
    let mut f = !0u64;
    if b & 1 == 0 {
        f &= !EVENT_IDX;
    }
    if b & 2 == 0 {
        f &= !(1 << 28);
    }
    f
}

/// The device's transport state and counters.
fn state(m: &Machine, slot: u8) -> (u8, u64, u64, BlockStats) {
    with_device(m, slot, |dev: &mut VirtioPciDevice<BlockDevice>| {
        (
            dev.status(),
            dev.driver_features(),
            dev.device().features() | F_VERSION_1,
            dev.device().stats(),
        )
    })
}

/// Status consistency: DRIVER_OK only after FEATURES_OK, and FEATURES_OK
/// only for features the device offered, VERSION_1 included.
pub fn check_status(status: u8, driver: u64, offered: u64) {
    if status & 4 != 0 {
        assert!(
            status & 8 != 0,
            "DRIVER_OK without FEATURES_OK ({status:#x})"
        );
    }
    if status & 8 != 0 {
        assert!(
            driver & !offered == 0 && driver & F_VERSION_1 != 0,
            "FEATURES_OK with features {driver:#x} (offered {offered:#x})"
        );
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let read_only = flags & 1 != 0;
    let discard = flags & 2 != 0;
    let msix = flags & 4 == 0;
    let sectors = 1 + u64::from(inp.u8() % 64);
    let (disk, contents) = MemDisk::new(sectors, read_only, discard);
    let original = contents.lock().unwrap().clone();
    let mut m = machine();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(disk, "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, wanted(inp.u8()), msix, queue_size(inp.u8()));
    // False once the guest rewrote queue registers behind the driver's back:
    // the rings the device uses are then unknown to the checks.
    let mut layout_known = true;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let q = &mut d.queues[0];
        let size = q.size;
        match inp.u8() % 11 {
            op @ 0..=3 => ring_op(op, &mut inp, &m.mem, q),
            4 => {
                // A request header (and discard segment) at a 16-byte slot.
                let off = (u64::from(inp.u16()) * 16) % (SCRATCH_LEN - 32);
                let kind = TYPES[usize::from(inp.u8() & 7)];
                let sector = match inp.u8() & 3 {
                    0 => u64::from(inp.u8()),
                    1 => sectors - 1,
                    2 => sectors,
                    _ => inp.u64(),
                };
                let count = u32::from(inp.u8());
                let seg_flags = u32::from(inp.u8() & 3);
                let mut h = [0u8; 32];
                h[0..4].copy_from_slice(&kind.to_le_bytes());
                h[8..16].copy_from_slice(&sector.to_le_bytes());
                h[16..24].copy_from_slice(&sector.to_le_bytes());
                h[24..28].copy_from_slice(&count.to_le_bytes());
                h[28..32].copy_from_slice(&seg_flags.to_le_bytes());
                m.mem.write_slice(&h, GuestAddress(SCRATCH + off)).unwrap();
            }
            5 => {
                // A well-formed chain of 1..4 buffers at consecutive descriptors.
                let n = 1 + usize::from(inp.u8() % 4).min(usize::from(size) - 1);
                let bufs: Vec<(u64, u32, bool)> = (0..n)
                    .map(|k| {
                        let a = SCRATCH + (u64::from(inp.u16()) * 16) % (SCRATCH_LEN - 0x1000);
                        let l = [16, 1, 512, 1024][usize::from(inp.u8() & 3)];
                        (a, l, k > 0 && (k == n - 1 || inp.u8() & 1 != 0))
                    })
                    .collect();
                q.add_chain(&m.mem, &bufs);
            }
            6 => {
                let before = state(&m, slot).3;
                let o = offer(&m.mem, q);
                d.kick(&mut m, 0);
                let after = state(&m, slot).3;
                let popped =
                    (after.requests + after.malformed) - (before.requests + before.malformed);
                assert!(after.io_errors + after.unsupported <= after.requests);
                if layout_known {
                    let q = &mut d.queues[0];
                    let used = take_used(&m.mem, q, &o, Some(u64::MAX));
                    if o.clean {
                        assert!(
                            used.len() as u64 <= popped && popped <= u64::from(q.size),
                            "{} used entries for {popped} chains taken (ring of {})",
                            used.len(),
                            q.size
                        );
                    }
                }
            }
            7 => {
                // Interrupt suppression: avail flags or used_event.
                suppression_op(&mut inp, &m.mem, q);
            }
            8 => {
                if !common_write_op(&mut inp, &mut m, &d) {
                    layout_known = false;
                }
            }
            9 => {
                let off = u64::from(inp.u8() % 64);
                let w = inp.width(true);
                d.common_read(&mut m, off, w);
            }
            _ => {
                d.init(&mut m, wanted(inp.u8()), msix, queue_size(inp.u8()));
                layout_known = true;
            }
        }
        let (status, driver, offered, _) = state(&m, slot);
        check_status(status, driver, offered);
    }
    if read_only {
        assert!(
            *contents.lock().unwrap() == original,
            "a read-only disk changed"
        );
    }
    still_works(&mut m, &mut d, &contents, read_only, msix, inp.u8());
}

/// One well-formed request on a fresh ring: (status, used length, data read).
fn request(
    m: &mut Machine,
    d: &mut VirtioDriver,
    kind: u32,
    sector: u64,
    out: &[u8],
    in_len: u32,
) -> (u8, u32, Vec<u8>) {
    let (hdr, data, status) = (SCRATCH, SCRATCH + 0x1000, SCRATCH + 0x3000);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    m.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
    m.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
    let mut bufs = vec![(hdr, 16, false)];
    if !out.is_empty() {
        m.mem.write_slice(out, GuestAddress(data)).unwrap();
        bufs.push((data, out.len() as u32, false));
    }
    if in_len > 0 {
        bufs.push((data, in_len, true));
    }
    bufs.push((status, 1, true));
    d.queues[0].add_chain(&m.mem, &bufs);
    d.kick(m, 0);
    let (id, len) = d.queues[0]
        .pop_used(&m.mem)
        .expect("a well-formed request is answered at once");
    assert!(
        d.queues[0].pop_used(&m.mem).is_none(),
        "one request, two answers"
    );
    let _ = id;
    let mut buf = vec![0u8; in_len as usize];
    m.mem.read_slice(&mut buf, GuestAddress(data)).unwrap();
    (m.mem.read_obj(GuestAddress(status)).unwrap(), len, buf)
}

/// After a reset a well-behaved driver reads what the disk holds, writes
/// (unless read-only) and gets the serial.
fn still_works(
    m: &mut Machine,
    d: &mut VirtioDriver,
    contents: &super::memdisk::Contents,
    read_only: bool,
    msix: bool,
    pick: u8,
) {
    d.init(m, !0, msix, 16);
    let sectors = contents.lock().unwrap().len() as u64 / 512;
    let s = u64::from(pick) % sectors;
    let want = contents.lock().unwrap()[s as usize * 512..][..512].to_vec();
    let (st, len, got) = request(m, d, blk::T_IN, s, &[], 512);
    assert_eq!(
        (st, len),
        (blk::S_OK, 513),
        "read of sector {s} after reset"
    );
    assert!(
        got == want,
        "sector {s} reads other bytes than the disk holds"
    );
    if pick & 7 != 0 {
        // The full round (write, read back, GET_ID, past the end) for one
        // input in eight: the read above already shows the queue works.
        return;
    }
    let pattern = vec![pick ^ 0x5a; 512];
    let (st, _, _) = request(m, d, blk::T_OUT, s, &pattern, 0);
    if read_only {
        assert_eq!(st, blk::S_IOERR, "write to a read-only disk");
        return;
    }
    assert_eq!(st, blk::S_OK, "write after reset");
    let (st, _, got) = request(m, d, blk::T_IN, s, &[], 512);
    assert!(
        st == blk::S_OK && got == pattern,
        "written sector reads back"
    );
    let (st, len, id) = request(m, d, blk::T_GET_ID, 0, &[], 20);
    assert_eq!((st, len), (blk::S_OK, 21));
    assert_eq!(&id[..6], b"cobd0\0");
    let (st, _, _) = request(m, d, blk::T_IN, sectors, &[], 512);
    assert_eq!(st, blk::S_IOERR, "read past the end");
}
