//! The daemon starts without libslirp and its glib: they are opened when a
//! slirp NIC is made (daemon/net/src/slirp/library.rs), so a daemon without
//! one does not carry them (issue 17's own-memory figure).

use std::process::Command;

/// The shared objects the dynamic loader maps for `bin` at start, as glibc's
/// `ld.so` lists them when `LD_TRACE_LOADED_OBJECTS` is set (what `ldd` does).
fn loaded_at_start(bin: &str) -> String {
    let out = Command::new(bin)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the daemon under the loader's trace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_daemon_starts_without_libslirp_or_glib() {
    let libs = loaded_at_start(env!("CARGO_BIN_EXE_colinux-daemon"));
    assert!(libs.contains("libc.so"), "the trace lists libc: {libs}");
    for lib in ["libslirp", "libglib", "libpcre2"] {
        assert!(!libs.contains(lib), "{lib} is mapped at start:\n{libs}");
    }
}
