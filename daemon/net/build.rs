//! Links the system libslirp (Debian's libslirp-dev) found through pkg-config.

fn main() {
    // 4.2 introduced slirp_new/SlirpConfig; our bindings follow the 4.7 header,
    // and only ever set fields up to SlirpConfig version 3, which 4.2+ all read.
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("4.2.0")
        .probe("slirp")
    {
        panic!("libslirp not found through pkg-config (install libslirp-dev, libglib2.0-dev, pkg-config): {e}");
    }
}
