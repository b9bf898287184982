//! The daemon's malloc policy (`malloc_policy::apply`), seen from a thread's
//! allocations:
//! - threads started after it allocate from arenas that already existed,
//!   not from new ones of their own (the daemon applies it before any
//!   thread; here the test's own thread may already have an arena, which
//!   then counts as existing too);
//! - a large block freed does not bring the next large block into the heap.
//!
//! One test in its own binary, so no other test's threads made arenas first.

use colinux_daemon::malloc_policy::{apply, Applied, MMAP_THRESHOLD};
use std::ops::Range;

/// Every mapping's address range, from /proc/self/maps, and the `[heap]`'s.
fn mappings() -> (Vec<Range<usize>>, Range<usize>) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut all = Vec::new();
    let mut heap = 0..0;
    for l in maps.lines() {
        let (a, b) = l
            .split_whitespace()
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let r = usize::from_str_radix(a, 16).unwrap()..usize::from_str_radix(b, 16).unwrap();
        if l.ends_with("[heap]") {
            heap = r.clone();
        }
        all.push(r);
    }
    (all, heap)
}

/// The mapping holding `addr`.
fn mapping_of(maps: &[Range<usize>], addr: usize) -> Range<usize> {
    maps.iter()
        .find(|m| m.contains(&addr))
        .cloned()
        .unwrap_or_else(|| panic!("{addr:#x} in no mapping"))
}

#[test]
fn threads_share_arenas_and_large_blocks_stay_mapped() {
    if let Applied::UserTuned(var) = apply() {
        eprintln!("SKIP: {var} is set, so the daemon leaves malloc to it");
        return;
    }
    assert_eq!(apply(), Applied::Yes);

    // The arenas that exist now: the main heap's, and this thread's.
    let mine = vec![1u8; 32 * 1024];
    let (before, heap) = mappings();
    let arenas = [heap.clone(), mapping_of(&before, mine.as_ptr() as usize)];

    // A large block, freed: glibc's own rule would now serve the next one
    // from the arena.
    drop(vec![2u8; MMAP_THRESHOLD + 4096]);
    let large = vec![3u8; MMAP_THRESHOLD + 4096];
    let at = large.as_ptr() as usize;
    assert!(
        !arenas.iter().any(|a| a.contains(&at)),
        "a large block at {at:#x} came from an arena {arenas:x?}, not a mapping of its own"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let tx = tx.clone();
            let done_rx = done_rx.clone();
            std::thread::spawn(move || {
                // Under the mapping threshold, so it comes from an arena.
                let block = vec![7u8; 32 * 1024];
                tx.send(block.as_ptr() as usize).unwrap();
                let _ = done_rx.lock().unwrap().recv();
                drop(block);
            })
        })
        .collect();
    let addrs: Vec<usize> = (0..4).map(|_| rx.recv().unwrap()).collect();
    for _ in 0..4 {
        done_tx.send(()).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    for a in addrs {
        assert!(
            arenas.iter().any(|m| m.contains(&a)),
            "a thread's block at {a:#x} lies in a new arena, not in {arenas:x?}"
        );
    }
    drop((mine, large));
}
