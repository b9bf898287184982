//! Times the monitor's share of a bzImage boot: decompressing the kernel's
//! LZ4 payload straight into guest RAM and moving its segments into place
//! (`load_in_place`), as many times as asked, and prints min, median and max.
//!
//! `cargo run --release -p colinux-driver --example boot_decompress -- VMLINUZ [RUNS]`

use std::time::Instant;

use colinux_driver::arch::x86_64::boot::vmlinux::load_in_place;
use vm_memory::{GuestAddress, GuestMemoryMmap};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: boot_decompress VMLINUZ [RUNS]");
    let runs: usize = args.next().map_or(15, |s| s.parse().expect("RUNS"));
    let image = std::fs::read(&path).expect("reading the kernel");
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 256 << 20)]).unwrap();
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let k = load_in_place(&mem, &image).expect("an LZ4 bzImage that fits 256 MiB");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(k);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "load_in_place: {} runs, min {:.1} median {:.1} max {:.1} ms",
        ms.len(),
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
}
