//! Link options of the daemon's programs.
//!
//! Relative relocations packed (`DT_RELR`, read by glibc 2.36 and later,
//! Debian 12's): the position-independent daemon has some 4,300 of them,
//! 100 KB of `.rela.dyn` that the loader reads at every start and that then
//! stays resident, counted in the monitor's own memory (issue 17). Packed,
//! they take 1.2 KB.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
