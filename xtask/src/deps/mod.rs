//! What the project needs on the machine, and installing what is missing.
//!
//! Every xtask command that builds the daemon or boots a VM calls
//! [`ensure`] first, so `cargo xtask run` and `cargo xtask ci` set up a fresh
//! Debian machine on their own (as README.md promises); `cargo xtask deps`
//! does only this step, and `.ci/run` uses it.

mod qemu;

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

/// Debian packages the build, the images and the boots need.
pub const PACKAGES: &[&str] = &[
    // images: guest and host initramfs, rootfs.ext4, e2fsck checks (first:
    // e2fsprogs may need an upgrade the others' resolution trips over)
    "e2fsprogs",
    "util-linux",
    "iproute2",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "zstd",
    // colinux-net links Debian's libslirp (found through pkg-config)
    "libslirp-dev",
    "libglib2.0-dev",
    "pkg-config",
    "ca-certificates",
    // colinux-image bootstrap: Debian system images from packages
    "mmdebstrap",
    // the distro scenario logs in to the system image (ssh, ssh-keygen)
    "openssh-client",
    // virtiofsd (built from crates.io by the images step, for the inner
    // QEMU's cofsN= shares) links libseccomp and libcap-ng
    "libseccomp-dev",
    "libcap-ng-dev",
    // the host VM and the inner qemu baseline (qemu-system-x86, qemu-utils)
    // come from qemu::ensure, as one consistent set
];

/// Packages of [`PACKAGES`] that dpkg does not list as installed.
fn missing() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${db:Status-Status}", p])
                .stderr(Stdio::null())
                .output();
            !matches!(out, Ok(o) if o.status.success() && o.stdout == b"installed")
        })
        .collect()
}

/// Whether this process runs with effective uid 0 (read from
/// `/proc/self/status`, which needs no unsafe call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn apt_get(args: &[&str]) -> Result<bool> {
    Ok(Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running apt-get {}", args[0]))?
        .success())
}

/// Installs `packages`: all at once, and where apt's resolver gives up on the
/// whole set ("held broken packages", seen on these machines' base image when
/// e2fsprogs needs an upgrade), one at a time in list order, which it solves.
/// A failing index refresh (a mirror caught mid-sync) is retried.
fn apt_install(extra: &[&str], packages: &[&str]) -> Result<()> {
    let install = [
        &[
            "install",
            "-y",
            "-qq",
            "-o",
            "Dpkg::Use-Pty=0",
            "--no-install-recommends",
        ][..],
        extra,
    ]
    .concat();
    for attempt in 1..=3 {
        if apt_get(&["update", "-qq"])? {
            if apt_get(&[&install[..], packages].concat())? {
                return Ok(());
            }
            eprintln!("deps: apt-get could not install the set at once; one at a time");
            let mut all = true;
            for p in packages {
                all &= apt_get(&[&install[..], &[p]].concat())?;
            }
            if all {
                return Ok(());
            }
        }
        eprintln!("deps: apt-get failed (attempt {attempt} of 3)");
        if attempt < 3 {
            std::thread::sleep(std::time::Duration::from_secs(20));
        }
    }
    bail!(
        "could not install {} with apt-get (see its messages above)",
        packages.join(" ")
    )
}

/// Installs the missing Debian packages (as root) or says exactly what to
/// install (otherwise); checks that cargo-nextest is there, installing it
/// with `cargo install --locked` when `want_nextest` and it is missing.
pub fn ensure(want_nextest: bool) -> Result<()> {
    let missing = missing();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages: {m}; install them with `sudo apt-get install {m}` (or run as root)",
                m = missing.join(" ")
            );
        }
        eprintln!("deps: installing {}", missing.join(" "));
        apt_install(&[], &missing)?;
        let still = self::missing();
        if !still.is_empty() {
            bail!(
                "apt-get succeeded but these are still not installed: {}",
                still.join(" ")
            );
        }
    }
    if is_root() {
        qemu::ensure(apt_install)?;
    } else if qemu::QEMU_PACKAGES
        .iter()
        .any(|p| qemu::installed_version(p).is_none())
    {
        bail!(
            "QEMU is not installed; as root, `cargo xtask deps` installs {} (from bookworm-backports on Debian 12)",
            qemu::QEMU_PACKAGES.join(" ")
        );
    }
    if want_nextest {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let has = Command::new(&cargo)
            .args(["nextest", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            eprintln!("deps: installing cargo-nextest");
            let st = Command::new(&cargo)
                .args(["install", "--locked", "cargo-nextest"])
                .status()
                .context("running cargo install cargo-nextest")?;
            if !st.success() {
                bail!("cargo install --locked cargo-nextest failed ({st})");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_list_has_no_duplicates_and_covers_the_build() {
        let mut p = PACKAGES.to_vec();
        p.sort_unstable();
        p.dedup();
        assert_eq!(p.len(), PACKAGES.len());
        for needed in ["libslirp-dev", "busybox-static"] {
            assert!(PACKAGES.contains(&needed), "{needed}");
        }
        // QEMU is installed as a set of its own, never through this list
        for q in qemu::QEMU_PACKAGES {
            assert!(!PACKAGES.contains(q), "{q}");
        }
    }
}
