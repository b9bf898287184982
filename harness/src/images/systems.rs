//! Step 4 of `cargo xtask images`: the system images made with `colinux-image
//! bootstrap`, each cached by the hash of its own inputs.
//!
//! - `distro` and `distro-swap` (`distro.ext4`, `distro-swap.img`): Debian 12
//!   with systemd, the `distro` scenario's (see distro.rs);
//! - `distro-sysv` (`distro-sysv.ext4`): Debian 12 with sysvinit and Debian's
//!   inittab as shipped, gettys on tty1..tty6 and none on the serial line,
//!   as classic coLinux images had: the `vt-console` scenario's.
//!
//! A failure (no Debian mirror, say) fails only the scenarios that boot the
//! image, with the message printed here; the others still run.

use super::{cached, distro, entry, step, ImageEntry, Manifest};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// What every system image build needs.
pub struct SystemInputs<'a> {
    /// The images directory.
    pub dir: &'a Path,
    /// The manifest of the previous build, if any (the cache).
    pub old: Option<&'a Manifest>,
    /// The `colinux-image` binary (None: not built, the images are not made).
    pub colinux_image: Option<&'a Path>,
    /// The kernel's input hash (its modules go into the images).
    pub kernel_inputs: &'a str,
    /// The harness's login public key (for `distro`).
    pub pubkey: &'a Path,
}

/// Builds (or reuses) `distro` and `distro-sysv`, adding what is ready to
/// `images`.
pub fn build(i: &SystemInputs, images: &mut BTreeMap<String, ImageEntry>) -> Result<()> {
    let din = hash_or_empty(distro::input_hash(i.kernel_inputs, i.pubkey), "distro.ext4");
    if cached(i.old, i.dir, "distro", &din) && i.dir.join("distro-swap.img").exists() {
        step(4, "system image distro.ext4 (cached)");
        insert_distro(i.dir, &din, images)?;
    } else if let Some(tool) = i.colinux_image.filter(|_| !din.is_empty()) {
        step(
            4,
            "system image distro.ext4: Debian 12 with colinux-image bootstrap (mmdebstrap)",
        );
        let modules = i.dir.join("vmlinux-modules.tar.gz");
        match distro::build(tool, i.dir, &modules, i.pubkey) {
            Ok(()) => insert_distro(i.dir, &din, images)?,
            Err(e) => eprintln!("images [4/5] ERROR: system image not built: {e:#}"),
        }
    } else {
        no_tool("distro.ext4");
    }

    let sin = hash_or_empty(distro::sysv_input_hash(i.kernel_inputs), "distro-sysv.ext4");
    if cached(i.old, i.dir, "distro-sysv", &sin) {
        step(4, "system image distro-sysv.ext4 (cached)");
        images.insert("distro-sysv".into(), entry(i.dir, distro::SYSV_FILE, sin)?);
    } else if let Some(tool) = i.colinux_image.filter(|_| !sin.is_empty()) {
        step(
            4,
            "system image distro-sysv.ext4: Debian 12 with sysvinit, gettys on tty1..tty6 (colinux-image bootstrap --init sysvinit)",
        );
        match distro::build_sysv(tool, i.dir, &i.dir.join("vmlinux-modules.tar.gz")) {
            Ok(()) => {
                images.insert("distro-sysv".into(), entry(i.dir, distro::SYSV_FILE, sin)?);
            }
            Err(e) => {
                eprintln!("images [4/5] ERROR: system image distro-sysv.ext4 not built: {e:#}")
            }
        }
    } else {
        no_tool("distro-sysv.ext4");
    }
    Ok(())
}

/// The input hash, or "" (never cached, never built) after printing why.
fn hash_or_empty(h: Result<String>, file: &str) -> String {
    h.unwrap_or_else(|e| {
        eprintln!("images [4/5] ERROR: {file}: {e:#}");
        String::new()
    })
}

fn no_tool(file: &str) {
    eprintln!(
        "images [4/5] WARNING: no colinux-image binary beside the daemon: system image {file} not built"
    );
}

fn insert_distro(dir: &Path, din: &str, images: &mut BTreeMap<String, ImageEntry>) -> Result<()> {
    images.insert("distro".into(), entry(dir, "distro.ext4", din.to_string())?);
    images.insert(
        "distro-swap".into(),
        entry(dir, "distro-swap.img", din.to_string())?,
    );
    Ok(())
}
