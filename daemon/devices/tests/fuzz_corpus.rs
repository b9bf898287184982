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

