//! Fuzz targets' bodies, shared by the cargo-fuzz crate (`fuzz/`, which
//! includes this directory and `../common` by `#[path]`) and the stable
//! regression test `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/*`.
//!
//! Each target reads its input as a little program ([`input::Input`]) of
//! guest actions against the real devices behind the real PCI root, driven
//! through the test-side driver in `tests/common`, and checks invariants as
//! it goes: a broken one panics, which libFuzzer reports as a crash.
#![allow(dead_code)]

pub mod blk;
pub mod input;
pub mod memdisk;
pub mod net;
pub mod pci;
pub mod ring;

use std::sync::{Arc, Mutex};

use crate::common::{DriverQueue, Machine, RecordingSink, VirtioDriver, WINDOW};
use colinux_devices::pci::{PciConfigIo, PciMmio, PciRoot};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Low RAM region: rings (0x1000..0x7000, laid out by `VirtioDriver::init`)
/// and the scratch area.
pub const LOW: (u64, usize) = (0, 0x1_0000);
/// High RAM region, after a hole, so buffers can straddle or fall in it.
pub const HIGH: (u64, usize) = (0x2_0000, 0x1_0000);
/// Where ring memory ends (three queues of 0x2000 bytes from 0x1000).
pub const RINGS_END: u64 = 0x7000;
/// Scratch area the guest programs mostly point buffers into.
pub const SCRATCH: u64 = 0x8000;
/// Length of the scratch area.
pub const SCRATCH_LEN: u64 = 0x8000;

thread_local! {
    static MEM: GuestMemoryMmap = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(LOW.0), LOW.1),
        (GuestAddress(HIGH.0), HIGH.1),
    ])
    .expect("guest memory");
}

/// A machine over this thread's small guest RAM, zeroed first (so one input
/// always sees the same memory, however many ran before it).
pub fn machine() -> Machine {
    let mem = MEM.with(|m| m.clone());
    for (base, len) in [LOW, HIGH] {
        mem.write_slice(&vec![0u8; len], GuestAddress(base))
            .expect("zeroing guest RAM");
    }
    let root = Arc::new(Mutex::new(PciRoot::new(WINDOW)));
    Machine {
        cfg: PciConfigIo::new(root.clone()),
        mmio: PciMmio::new(root.clone()),
        root,
        mem,
        sink: Arc::new(RecordingSink::default()),
    }
}

/// Runs `f` on the device of type `T` in `slot` (its counters and state
/// the guest cannot see). The one place that reaches into the PCI root.
pub fn with_device<T: 'static, R>(m: &Machine, slot: u8, f: impl FnOnce(&mut T) -> R) -> R {
    let root = m.root.lock().unwrap();
    let mut guard = root.device(slot);
    let dev = guard
        .as_mut()
        .and_then(|d| d.as_any_mut())
        .and_then(|d| d.downcast_mut::<T>())
        .expect("the device is in its slot");
    f(dev)
}

/// Whether `[a, a + len)` intersects `[b, b + blen)`.
pub fn overlaps(a: u64, len: u64, b: u64, blen: u64) -> bool {
    len != 0 && blen != 0 && a < b.saturating_add(blen) && b < a.saturating_add(len)
}

/// The ring actions both virtio targets share (`op` 0..=3 of their
/// programs): a raw descriptor, an available-ring head, a raw `avail.idx`,
/// raw bytes in the scratch area.
pub fn ring_op(op: u8, inp: &mut input::Input<'_>, mem: &GuestMemoryMmap, q: &mut DriverQueue) {
    let size = q.size;
    match op {
        0 => {
            let i = inp.u16() % size;
            let (addr, len, fl) = (inp.addr(), inp.len(), u16::from(inp.u8()));
            let fl = if fl & 0x80 != 0 { inp.u16() } else { fl & 7 };
            let next = inp.u16() % (size + 4);
            q.write_desc(mem, i, addr, len, fl, next);
        }
        1 => {
            let head = inp.u16() % (size + 2);
            q.publish(mem, head);
        }
        2 => {
            let idx = inp.u16();
            mem.write_obj(idx, GuestAddress(q.avail + 2)).unwrap();
            q.avail_idx = idx;
        }
        _ => {
            let off = u64::from(inp.u16()) % SCRATCH_LEN;
            let n = usize::from(inp.u8()).min((SCRATCH_LEN - off) as usize);
            let bytes = inp.bytes(n);
            mem.write_slice(bytes, GuestAddress(SCRATCH + off)).unwrap();
        }
    }
}

/// Interrupt suppression as both virtio targets fuzz it: a raw avail-ring
/// `flags` word or a raw `used_event`.
pub fn suppression_op(inp: &mut input::Input<'_>, mem: &GuestMemoryMmap, q: &DriverQueue) {
    let v = inp.u16();
    if inp.u8() & 1 == 0 {
        mem.write_obj(v, GuestAddress(q.avail)).unwrap();
    } else {
        q.set_used_event(mem, v);
    }
}

/// A raw write to the common configuration (offset, width and value from the
/// input). Returns whether the queue layout the target tracks is still known:
/// only writing 0 to `device_status` (a reset) keeps it.
pub fn common_write_op(inp: &mut input::Input<'_>, m: &mut Machine, d: &VirtioDriver) -> bool {
    let off = u64::from(inp.u8() % 64);
    let w = inp.width(true);
    let v = inp.u64();
    d.common_write(m, off, w, v);
    off == 20 && v as u8 == 0
}
