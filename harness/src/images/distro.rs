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
//!   file;
//! - `distro-sysv.ext4`: the same Debian 12 with sysvinit as PID 1 and its
//!   inittab as shipped (gettys on tty1..tty6, the screen; none on the serial
//!   line), no swap, no key: the classic coLinux image, for the `vt-console`
//!   scenario.

use crate::util::{run, InputHash};
use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the system image (sparse).
pub const DISTRO_SIZE: &str = "2G";
/// Size of its swap file.
pub const DISTRO_SWAP_SIZE: &str = "256M";
/// The sysvinit system image's file in the images directory.
pub const SYSV_FILE: &str = "distro-sysv.ext4";
/// Its size (sparse; the system uses about 380 MiB).
pub const SYSV_SIZE: &str = "1G";

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

/// The input hash of the sysvinit system image: the bootstrap recipe, the
/// modules, the init and the size.
pub fn sysv_input_hash(modules_inputs: &str) -> Result<String> {
    let recipe = crate::paths::workspace_root().join("daemon/src/image/bootstrap");
    Ok(InputHash::default()
        .text("modules", modules_inputs)
        .text("init", "sysvinit")
        .text("size", SYSV_SIZE)
        .tree(&recipe)?
        .finish())
}

/// Build `distro.ext4` and `distro-swap.img` in `dir` with `colinux-image
/// bootstrap` (mmdebstrap; its progress goes to this terminal).
pub fn build(colinux_image: &Path, dir: &Path, modules: &Path, pubkey: &Path) -> Result<()> {
    let swap = dir.join("distro-swap.img");
    let _ = std::fs::remove_file(&swap);
    let extra = [
        OsStr::new("--swap"),
        swap.as_os_str(),
        OsStr::new(DISTRO_SWAP_SIZE),
        OsStr::new("--authorized-key"),
        pubkey.as_os_str(),
    ];
    bootstrap(
        colinux_image,
        &dir.join("distro.ext4"),
        DISTRO_SIZE,
        modules,
        &extra,
    )
}

/// Build `distro-sysv.ext4` in `dir` with `colinux-image bootstrap --init
/// sysvinit`.
pub fn build_sysv(colinux_image: &Path, dir: &Path, modules: &Path) -> Result<()> {
    let extra = [OsStr::new("--init"), OsStr::new("sysvinit")];
    bootstrap(
        colinux_image,
        &dir.join(SYSV_FILE),
        SYSV_SIZE,
        modules,
        &extra,
    )
}

/// Runs `colinux-image bootstrap IMAGE SIZE --force --modules MODULES EXTRA...`.
fn bootstrap(
    colinux_image: &Path,
    image: &Path,
    size: &str,
    modules: &Path,
    extra: &[&OsStr],
) -> Result<()> {
    let st = Command::new(colinux_image)
        .arg("bootstrap")
        .arg(image)
        .arg(size)
        .arg("--force")
        .arg("--modules")
        .arg(modules)
        .args(extra)
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
