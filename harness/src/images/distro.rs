//! The distribution guest: what a coLinux user boots.
//!
//! - `vmlinux-modules.tar.gz`: the kernel's modules as `lib/modules/<release>/`
//!   (coLinux shipped `vmlinux-modules.tar.gz` for its kernel), for system
//!   images made with `colinux-image bootstrap --modules`;
//! - `distro-key` / `distro-key.pub`: an ed25519 key the harness logs in with
//!   (the public half goes into the image's root authorized_keys, the private
//!   half into the host VM);
//! - `distro.ext4` + `distro-swap.img`: a Debian 12 system image (systemd,
//!   udev, ifupdown eth0 by DHCP, openssh-server, serial getty, fstab naming
//!   /dev/cobd0 and /dev/cobd1) made by `colinux-image bootstrap`, and its swap
//!   file.

use crate::util::{run, InputHash};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the system image (sparse).
pub const DISTRO_SIZE: &str = "2G";
/// Size of its swap file.
pub const DISTRO_SWAP_SIZE: &str = "256M";

/// Write `out` (tar.gz of `lib/modules`) from the unpacked kernel package.
pub fn modules_tarball(kernel_root: &Path, out: &Path) -> Result<()> {
    let tmp = out.with_extension("partial");
    run(Command::new("tar")
        .arg("-C")
        .arg(kernel_root)
        .args(["--owner=0", "--group=0", "--sort=name", "-czf"])
        .arg(&tmp)
        .arg("lib/modules"))
    .with_context(|| format!("packing the kernel modules into {}", out.display()))?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// The harness's login key in `dir` (made once with ssh-keygen); returns the
/// private key's path (the public one is beside it, `.pub`).
pub fn login_key(dir: &Path) -> Result<PathBuf> {
    let key = dir.join("distro-key");
    if key.exists() && key.with_extension("pub").exists() {
        return Ok(key);
    }
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "colinux-harness",
            "-f",
        ])
        .arg(&key))
    .context("making the harness's ssh key (needs openssh-client)")?;
    Ok(key)
}

/// The input hash of the system image: the bootstrap recipe (its source),
/// the modules, the key and the sizes.
pub fn input_hash(modules_inputs: &str, pubkey: &Path) -> Result<String> {
    let recipe = crate::paths::workspace_root().join("daemon/src/image/bootstrap");
    Ok(InputHash::default()
        .text("modules", modules_inputs)
        .text("size", DISTRO_SIZE)
        .text("swap", DISTRO_SWAP_SIZE)
        .tree(&recipe)?
        .file(pubkey)?
        .finish())
}

/// Build `distro.ext4` and `distro-swap.img` in `dir` with `colinux-image
/// bootstrap` (mmdebstrap; its progress goes to this terminal).
pub fn build(colinux_image: &Path, dir: &Path, modules: &Path, pubkey: &Path) -> Result<()> {
    let image = dir.join("distro.ext4");
    let swap = dir.join("distro-swap.img");
    let _ = std::fs::remove_file(&swap);
    let st = Command::new(colinux_image)
        .arg("bootstrap")
        .arg(&image)
        .arg(DISTRO_SIZE)
        .arg("--force")
        .arg("--swap")
        .arg(&swap)
        .arg(DISTRO_SWAP_SIZE)
        .arg("--modules")
        .arg(modules)
        .arg("--authorized-key")
        .arg(pubkey)
        .status()
        .with_context(|| format!("starting {}", colinux_image.display()))?;
    anyhow::ensure!(
        st.success(),
        "{} bootstrap {} failed ({st}): a Debian 12 system image from Debian packages, see above",
        colinux_image.display(),
        image.display()
    );
    Ok(())
}
