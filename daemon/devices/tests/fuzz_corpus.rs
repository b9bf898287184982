//! The fuzz targets' corpora (`fuzz/corpus/<target>/`, seeds, minimized
//! finds and every input that once crashed) replayed through the same code
//! the targets run, so `cargo nextest run` keeps them passing without a
//! fuzzer. A failure names the input file: `cargo fuzz run <target> <file>`
//! reproduces it under libFuzzer.

mod common;
mod fuzzing;

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{target}: input {} fails", f.display());
    }
}

#[test]
fn virtio_blk_corpus_replays() {
    replay("virtio_blk", fuzzing::blk::run);
}

#[test]
fn virtio_net_corpus_replays() {
    replay("virtio_net", fuzzing::net::run);
}

#[test]
fn pci_config_corpus_replays() {
    replay("pci_config", fuzzing::pci::run);
}

#[test]
fn empty_and_tiny_inputs_run() {
    for data in [&[][..], &[0], &[0xff; 3], &[6, 6, 6, 6, 6]] {
        fuzzing::blk::run(data);
        fuzzing::net::run(data);
        fuzzing::pci::run(data);
    }
}

// ---- what the fuzzers found, as named tests ----

use colinux_devices::virtio::blk::{self as vblk, BlockDevice};
use colinux_devices::virtio::pci::VirtioPciDevice;
use common::{VirtioDriver, DRIVER_OK, FEATURES_OK};
use fuzzing::memdisk::MemDisk;
use vm_memory::{Bytes, GuestAddress};

fn blk_machine(sectors: u64) -> (common::Machine, VirtioDriver) {
    let mut m = fuzzing::machine();
    let (disk, _) = MemDisk::new(sectors, false, false);
    let slot = m.add(Box::new(VirtioPciDevice::new(
        BlockDevice::new(disk, "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        None,
    )));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, !0, true, 8);
    (m, d)
}

/// virtio_blk found it (`crash-status-cleared-while-live`): a status write
/// without FEATURES_OK to a live device left it running with DRIVER_OK, and
/// the driver could then change the features it had negotiated. Only a
/// reset takes FEATURES_OK and DRIVER_OK back.
#[test]
fn a_live_device_keeps_its_features_until_reset() {
    let (mut m, d) = blk_machine(8);
    d.set_status(&mut m, DRIVER_OK);
    let s = d.status(&mut m);
    assert_eq!(
        s & (FEATURES_OK | DRIVER_OK),
        FEATURES_OK | DRIVER_OK,
        "{s:#x}"
    );
    // The feature words are frozen: VERSION_1 (bit 32) stays accepted.
    d.common_write(&mut m, 8, 4, 1);
    d.common_write(&mut m, 12, 4, 0);
    assert_eq!(d.common_read(&mut m, 12, 4), 1);
    d.set_status(&mut m, 0);
    assert_eq!(d.status(&mut m), 0, "a reset still clears everything");
}

/// virtio_blk found it (`crash-sector-offset-overflow`): a request for a
/// sector near 2^64 overflowed computing its byte offset (a panic with
/// overflow checks on) before the range check refused it.
#[test]
fn a_sector_near_the_top_of_u64_is_an_io_error() {
    let (mut m, mut d) = blk_machine(8);
    let (hdr, data, status) = (0x8000u64, 0x9000u64, 0xa000u64);
    for sector in [u64::MAX, u64::MAX / 512 + 1, 1 << 60] {
        let mut h = [0u8; 16];
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        m.mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        m.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
        d.queues[0].add_chain(
            &m.mem,
            &[(hdr, 16, false), (data, 512, true), (status, 1, true)],
        );
        d.kick(&mut m, 0);
        assert_eq!(d.queues[0].pop_used(&m.mem).map(|u| u.1), Some(1));
        assert_eq!(
            m.mem.read_obj::<u8>(GuestAddress(status)).unwrap(),
            vblk::S_IOERR,
            "sector {sector:#x}"
        );
    }
}
