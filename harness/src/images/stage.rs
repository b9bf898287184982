//! Staging directories for images: busybox with its applet links, kernel
//! modules, binaries with their shared libraries; packing as cpio or ext4.

use crate::util::{run, run_stdout};
use anyhow::{Context, Result};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory being filled to become an image.
pub struct Stage {
    /// Its root.
    pub root: PathBuf,
}

impl Stage {
    /// A fresh, empty staging directory.
    pub fn new(root: PathBuf) -> Result<Self> {
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("clearing {}", root.display()))?;
        }
        for d in [
            "bin",
            "sbin",
            "etc/colinux",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "lib/modules",
            "root",
            "mnt",
            "var",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(Self { root })
    }

    fn dest(&self, rel: &str) -> Result<PathBuf> {
        let d = self.root.join(rel.trim_start_matches('/'));
        if let Some(p) = d.parent() {
            std::fs::create_dir_all(p)?;
        }
        Ok(d)
    }

    /// Copy a host file to `rel` with `mode`.
    pub fn copy(&self, src: &Path, rel: &str, mode: u32) -> Result<()> {
        let d = self.dest(rel)?;
        std::fs::copy(src, &d)
            .with_context(|| format!("copying {} to {}", src.display(), d.display()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Write `data` to `rel` with `mode`.
    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        let d = self.dest(rel)?;
        std::fs::write(&d, data)?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// /bin/busybox plus a /bin link per applet (so `#!/bin/sh` works at once).
    pub fn busybox(&self) -> Result<()> {
        let bb = which("busybox")?;
        self.copy(&bb, "bin/busybox", 0o755)?;
        let list = run_stdout(Command::new(&bb).arg("--list"))?;
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let l = self.root.join("bin").join(applet);
            if !l.exists() {
                symlink("busybox", &l)?;
            }
        }
        Ok(())
    }

    /// Copy kernel modules flat to /lib/modules/NAME.ko (decompressing .xz/.zst)
    /// and, when `list` is given, write that load order to /etc/colinux/modules.
    pub fn modules(&self, mods: &[(String, PathBuf)], list: Option<&[String]>) -> Result<()> {
        for (name, path) in mods {
            let rel = format!("lib/modules/{name}.ko");
            let p = path.display().to_string();
            if p.ends_with(".ko.xz") || p.ends_with(".ko.zst") {
                let tool = if p.ends_with(".xz") { "xz" } else { "zstd" };
                let out = run(Command::new(tool).arg("-dc").arg(path))?;
                self.write(&rel, &out.stdout, 0o644)?;
            } else {
                self.copy(path, &rel, 0o644)?;
            }
        }
        if let Some(order) = list {
            self.write(
                "etc/colinux/modules",
                (order.join("\n") + "\n").as_bytes(),
                0o644,
            )?;
        }
        Ok(())
    }

    /// Copy a dynamically linked binary to `rel` and its libraries (from ldd) to
    /// their own paths.
    pub fn binary_with_libs(&self, bin: &Path, rel: &str) -> Result<()> {
        self.copy(bin, rel, 0o755)?;
        let out = Command::new("ldd").arg(bin).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        for lib in ldd_paths(&text) {
            let d = self.root.join(lib.trim_start_matches('/'));
            if !d.exists() {
                self.copy(Path::new(&lib), &lib, 0o755)?;
            }
        }
        Ok(())
    }

    /// Copy the shared library the dynamic loader finds as `soname` (a program
    /// opens it at run time) and the libraries it needs, to their own paths.
    pub fn library_with_libs(&self, soname: &str) -> Result<()> {
        let out = Command::new(which("ldconfig")?).arg("-p").output()?;
        let cache = String::from_utf8_lossy(&out.stdout);
        let path = ldconfig_path(&cache, soname).with_context(|| {
            format!(
                "{soname} is not in the loader's cache (ldconfig -p); is its package installed?"
            )
        })?;
        self.binary_with_libs(Path::new(&path), path.trim_start_matches('/'))
    }

    /// Pack as an uncompressed newc cpio archive (owner root).
    pub fn cpio(&self, out: &Path) -> Result<()> {
        self.pack_cpio(out, "")
    }

    /// Pack as a gzip-compressed newc cpio archive (owner root). The kernel
    /// unpacks an initramfs while it still holds the image: compressed, a
    /// small guest (the swap scenario's 80 MiB) needs less memory at boot.
    pub fn cpio_gz(&self, out: &Path) -> Result<()> {
        self.pack_cpio(out, " | gzip -n -6")
    }

    fn pack_cpio(&self, out: &Path, filter: &str) -> Result<()> {
        let tmp = out.with_extension("tmp");
        let script = format!(
            "set -o pipefail; find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet{filter} > '{}'",
            tmp.display()
        );
        run(Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.root))?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    }

    /// Make an ext4 image of `size_mib` from the staging tree (mke2fs -d, no mounts).
    pub fn ext4(&self, out: &Path, size_mib: u64, label: &str) -> Result<()> {
        mke2fs_d(&self.root, out, size_mib, label)
    }
}

/// `mke2fs -d DIR` into a fresh image file of `size_mib`.
pub fn mke2fs_d(dir: &Path, out: &Path, size_mib: u64, label: &str) -> Result<()> {
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-E",
            "root_owner=0:0",
            "-L",
            label,
            "-d",
        ])
        .arg(dir)
        .arg(out)
        .arg(format!("{size_mib}M")))?;
    Ok(())
}

/// The x86-64 path `ldconfig -p` gives for `soname`.
pub fn ldconfig_path(cache: &str, soname: &str) -> Option<String> {
    cache.lines().find_map(|l| {
        let (name, rest) = l.trim().split_once(" (")?;
        let (flags, path) = rest.split_once(") => ")?;
        (name == soname && flags.contains("x86-64")).then(|| path.trim().to_string())
    })
}

/// Library paths named by ldd output.
pub fn ldd_paths(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        let cand = match l.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = cand.filter(|p| p.starts_with('/')) {
            v.push(p.to_string());
        }
    }
    v
}

/// Find a program on PATH (plus the sbin directories).
pub fn which(prog: &str) -> Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file());
    found.with_context(|| format!("{prog} not found on PATH (install its Debian package)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldconfig_cache_gives_the_64_bit_path() {
        let cache = "1234 libs found in cache `/etc/ld.so.cache'\n\
            \tlibslirp.so.0 (libc6) => /usr/lib32/libslirp.so.0\n\
            \tlibslirp.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libslirp.so.0\n";
        assert_eq!(
            ldconfig_path(cache, "libslirp.so.0").as_deref(),
            Some("/lib/x86_64-linux-gnu/libslirp.so.0")
        );
        assert_eq!(ldconfig_path(cache, "libfoo.so.1"), None);
    }

    #[test]
    fn ldd_output_is_parsed() {
        let t = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            ldd_paths(t),
            vec![
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
