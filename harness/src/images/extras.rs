//! Extra programs in the images, beyond busybox:
//!
//! - guest: every `vm-images/guest/tools/NAME.c` compiled with `cc -static`
//!   to `/bin/NAME` (small measuring tools busybox lacks, e.g. `cobd-bench`
//!   for O_DIRECT throughput and 4 KiB IOPS). A header beside them (e.g.
//!   `bench-common.h`) is shared by `#include "..."`, which looks in the
//!   source's own directory. The sources are under the guest recipe
//!   directory, so the guest image's input hash already covers them.
//! - host VM: e2fsprogs (`e2fsck`, `debugfs`, `dumpe2fs`, `mke2fs` with
//!   `/etc/mke2fs.conf`), so host scripts can format cobd images and check
//!   them after a crash (scenario cobd-crash).

use super::stage::{which, Stage};
use crate::util::{run, InputHash};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// e2fsprogs programs packed into the host initramfs under /usr/sbin.
pub const HOST_E2FSPROGS: &[&str] = &["e2fsck", "debugfs", "dumpe2fs", "mke2fs"];

/// The C sources of the guest tools, sorted.
fn guest_tool_sources(guest_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = guest_dir.join("tools");
    if !dir.exists() {
        return Ok(vec![]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    v.sort();
    Ok(v)
}

/// Compile every guest tool (static, -O2) into the stage's /bin.
pub fn guest_tools(stage: &Stage, guest_dir: &Path) -> Result<()> {
    for src in guest_tool_sources(guest_dir)? {
        let name = src
            .file_stem()
            .and_then(|s| s.to_str())
            .context("guest tool without a name")?;
        let out = stage.root.join("bin").join(name);
        if out.exists() || out.is_symlink() {
            std::fs::remove_file(&out)?;
        }
        run(Command::new("cc")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src))
        .with_context(|| {
            format!(
                "compiling guest tool {} (needs gcc and libc6-dev)",
                src.display()
            )
        })?;
    }
    Ok(())
}

/// The host-VM e2fsprogs binaries found on this machine; hashes them into `h`.
pub fn host_e2fsprogs(h: &mut InputHash) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for p in HOST_E2FSPROGS {
        let bin = which(p)?;
        h.file(&bin)?;
        v.push(bin);
    }
    Ok(v)
}

/// Pack the e2fsprogs binaries (with their libraries) and mke2fs.conf.
pub fn pack_host_e2fsprogs(stage: &Stage, bins: &[PathBuf]) -> Result<()> {
    for b in bins {
        let name = b.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        stage.binary_with_libs(b, &format!("usr/sbin/{name}"))?;
    }
    let conf = Path::new("/etc/mke2fs.conf");
    if conf.exists() {
        stage.copy(conf, "etc/mke2fs.conf", 0o644)?;
    }
    Ok(())
}
