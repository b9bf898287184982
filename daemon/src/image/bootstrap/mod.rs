//! `colinux-image bootstrap`: a ready Debian system image (the kind coLinux
//! users downloaded) built from Debian packages.
//!
//! Four stages: `mmdebstrap` installs the packages (and the init asked for,
//! systemd or sysvinit) into a directory tree in a scratch directory beside
//! the image; the tree is customized (fstab, hostname, network, the
//! consoles' gettys, ssh keys, root password, kernel modules); `mke2fs -d`
//! turns it into an ext4 image (`FILE.partial`); with `--swap` a
//! swap file is made; then the partial files are renamed into place.
//!
//! The tree is a directory, not a tarball: e2fsprogs 1.47.0 (Debian 12)
//! cannot read a tarball with `-d` (that came with 1.47.1), and copying a
//! directory keeps owners, modes, symlinks, device nodes, hard links and
//! extended attributes (the `cap_net_raw` file capability of `ping`).
//!
//! Whatever fails (a tool, a bad mirror, SIGINT or SIGTERM), the scratch
//! directory and the partial files are removed: no image is left half made.

mod customize;
mod files;
mod gettys;
mod mirror;
mod modules;
mod options;
mod preflight;
mod process;
mod scratch;

use std::path::Path;
use std::time::Instant;

use super::detect::{detect, ImageKind};
use super::{ops, ImageError};
use customize::{set_root_password, write_config};
use modules::{install_modules, modules_listing};
use preflight::preflight;
use process::{catch_stop_signals, check_stop, make_fs, run_mmdebstrap};
use scratch::{partial_of, publish, Scratch};

pub use customize::{fstab_text, hosts_text, interfaces_text};
pub use gettys::{inittab_gettys, VT_GETTYS};
pub use mirror::{host_mirror, mirror_from_sources};
pub use modules::module_releases;
pub use options::{
    check_hostname, BootstrapOptions, BootstrapReport, Init, SwapSpec, DEFAULT_HOSTNAME,
    DEFAULT_LABEL, DEFAULT_MIRROR, DEFAULT_SUITE, PACKAGES,
};

/// A two-line `colinux.conf` that boots the image (and uses the swap file).
pub fn example_conf(image: &Path, swap: Option<&Path>) -> String {
    let mut first = format!("kernel=vmlinuz initrd=initrd.gz cobd0={}", image.display());
    if let Some(s) = swap {
        first.push_str(&format!(" cobd1={}", s.display()));
    }
    format!("{first}\nroot=/dev/cobd0 ro eth0=slirp,,tcp:2222:22\n")
}

/// Builds the image (and swap file) as `o` says, calling `progress` with a
/// line per stage. On any failure, SIGINT or SIGTERM included, nothing of
/// the build is left behind.
pub fn bootstrap(
    o: &BootstrapOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BootstrapReport, ImageError> {
    let started = Instant::now();
    catch_stop_signals()?;
    preflight(o)?;
    let mut s = Scratch::new(&o.image)?;
    let releases = match &o.modules {
        Some(m) => modules_listing(m, &s.dir.join("modules-list.log"))?,
        None => Vec::new(),
    };
    let mirror = o.mirror.clone().unwrap_or_else(|| host_mirror(&o.suite));
    progress(&format!(
        "bootstrap [1/4] mmdebstrap: Debian {} from {mirror} into {} (init: {})",
        o.suite,
        s.root().display(),
        o.init.name()
    ));
    run_mmdebstrap(o, &mirror, &s)?;
    check_stop()?;

    progress(&format!(
        "bootstrap [2/4] customize: fstab, hostname, network, {}, ssh, root password, modules",
        match o.init {
            Init::Systemd => "serial getty",
            Init::Sysvinit => "inittab gettys on tty1..tty6",
        }
    ));
    write_config(o, &s.root())?;
    set_root_password(o, &s)?;
    if let Some(m) = &o.modules {
        install_modules(m, &releases, &s)?;
    }
    check_stop()?;

    let partial = partial_of(&o.image);
    if o.force {
        let _ = std::fs::remove_file(&partial);
    }
    s.partials.push(partial.clone());
    progress(&format!(
        "bootstrap [3/4] mke2fs: ext4 `{}` on {}",
        o.label,
        partial.display()
    ));
    make_fs(o, &partial, &s)?;
    check_stop()?;

    let swap_uuid = match &o.swap {
        Some(sw) => {
            let sp = partial_of(&sw.path);
            if o.force {
                let _ = std::fs::remove_file(&sp);
            }
            progress(&format!("bootstrap [4/4] swap file {}", sw.path.display()));
            let uuid = ops::mkswap(&sp, sw.size, None, false)?;
            s.partials.push(sp);
            check_stop()?;
            Some(uuid)
        }
        None => {
            progress("bootstrap [4/4] finishing (no swap file asked for)");
            None
        }
    };
    let info = detect(&partial)?;
    let used_bytes = match &info.kind {
        ImageKind::Ext(e) => (e.block_count - e.free_blocks) * e.block_size,
        _ => 0,
    };
    if let Some(sw) = &o.swap {
        publish(&partial_of(&sw.path), &sw.path, o.force)?;
        s.partials.retain(|p| *p != partial_of(&sw.path));
    }
    if let Err(e) = publish(&partial, &o.image, o.force) {
        if let Some(sw) = &o.swap {
            let _ = std::fs::remove_file(&sw.path);
        }
        return Err(e);
    }
    s.partials.clear();
    Ok(BootstrapReport {
        image_size: info.size,
        used_bytes,
        mirror,
        module_releases: releases,
        swap_uuid,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_conf_is_two_lines() {
        let t = example_conf(Path::new("/d/debian.img"), Some(Path::new("/d/swap.img")));
        assert_eq!(
            t,
            "kernel=vmlinuz initrd=initrd.gz cobd0=/d/debian.img cobd1=/d/swap.img\n\
             root=/dev/cobd0 ro eth0=slirp,,tcp:2222:22\n"
        );
        assert!(!example_conf(Path::new("a"), None).contains("cobd1"));
    }
}
