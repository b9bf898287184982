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

use crate::common::{Machine, RecordingSink, WINDOW};
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
