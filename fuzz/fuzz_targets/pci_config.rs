//! `cargo fuzz run pci_config`: see `daemon/devices/tests/fuzzing/pci.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    colinux_fuzz::fuzzing::pci::run(data);
});
