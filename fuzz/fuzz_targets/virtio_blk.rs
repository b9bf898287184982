//! `cargo fuzz run virtio_blk`: see `daemon/devices/tests/fuzzing/blk.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    colinux_fuzz::fuzzing::blk::run(data);
});
