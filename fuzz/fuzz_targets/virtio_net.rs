//! `cargo fuzz run virtio_net`: see `daemon/devices/tests/fuzzing/net.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    colinux_fuzz::fuzzing::net::run(data);
});
