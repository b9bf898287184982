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

#[test]
fn opened_libraries_names_libslirp_one_a_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_colinux-daemon"))
        .arg("--opened-libraries")
        .output()
        .expect("run the daemon");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let libs: Vec<&str> = text.lines().collect();
    assert_eq!(libs, colinux_net::OPENED_LIBRARIES);
    assert!(libs.contains(&"libslirp.so.0"), "{text}");
}
