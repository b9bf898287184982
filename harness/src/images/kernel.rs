//! The Debian cloud kernel: resolve the current package, `apt-get download`
//! it, unpack with `dpkg-deb -x`, and compute module load orders from modules.dep.

use crate::util::{run, run_stdout};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel package the images are built from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelPackage {
    /// e.g. linux-image-6.1.0-56-cloud-amd64
    pub package: String,
    /// Debian version, e.g. 6.1.192-2
    pub version: String,
    /// Module directory name (uname -r), e.g. 6.1.0-56-cloud-amd64
    pub release: String,
}

/// Resolve the package `linux-image-cloud-amd64` currently depends on.
pub fn resolve() -> Result<KernelPackage> {
    let deps = run_stdout(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|s| s.trim().to_string())
        .find(|s| s.starts_with("linux-image-") && s.ends_with("-cloud-amd64"))
        .context("apt-cache depends linux-image-cloud-amd64 names no linux-image-*-cloud-amd64")?;
    let show = run_stdout(Command::new("apt-cache").args(["show", "--no-all-versions", &package]))?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("apt-cache show {package}: no Version"))?;
    let release = package.trim_start_matches("linux-image-").to_string();
    Ok(KernelPackage {
        package,
        version,
        release,
    })
}

/// Download and unpack `pkg` into `root` (replacing it).
pub fn fetch(pkg: &KernelPackage, dl: &Path, root: &Path) -> Result<()> {
    std::fs::create_dir_all(dl)?;
    for e in std::fs::read_dir(dl)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            std::fs::remove_file(p)?;
        }
    }
    run(Command::new("apt-get").current_dir(dl).args([
        "download",
        "-q",
        &format!("{}={}", pkg.package, pkg.version),
    ]))?;
    let deb = std::fs::read_dir(dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download produced no .deb")?;
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
    // The package leaves modules.dep to its postinst: run depmod on the tree.
    run(Command::new(crate::images::stage::which("depmod")?)
        .arg("-b")
        .arg(root)
        .arg(&pkg.release))?;
    Ok(())
}

/// The unpacked kernel tree.
pub struct KernelTree {
    /// Root of the unpacked package.
    pub root: PathBuf,
    /// uname -r
    pub release: String,
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

impl KernelTree {
    /// The bzImage.
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    fn moddir(&self) -> PathBuf {
        // Debian bookworm ships modules under /lib (merged-usr makes it usr/lib on disk).
        let a = self.root.join("lib/modules").join(&self.release);
        if a.exists() {
            a
        } else {
            self.root.join("usr/lib/modules").join(&self.release)
        }
    }

    /// Module name -> (file, dependency names) from modules.dep.
    fn deps(&self) -> Result<BTreeMap<String, (PathBuf, Vec<String>)>> {
        let dir = self.moddir();
        let text = std::fs::read_to_string(dir.join("modules.dep"))
            .with_context(|| format!("reading {}/modules.dep", dir.display()))?;
        let name_of = |p: &str| {
            let f = p.rsplit('/').next().unwrap_or(p);
            norm(f.split(".ko").next().unwrap_or(f))
        };
        let mut m = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let Some((file, deps)) = line.split_once(':') else {
                bail!("modules.dep line {}: no ':' in {line:?}", i + 1);
            };
            m.insert(
                name_of(file),
                (
                    dir.join(file),
                    deps.split_whitespace().map(name_of).collect(),
                ),
            );
        }
        Ok(m)
    }

    /// Modules `wanted` plus their dependencies, dependencies first, as
    /// (file name stem, path). Names may use '-' or '_'.
    pub fn closure(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
        let deps = self.deps()?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        fn visit(
            n: &str,
            deps: &BTreeMap<String, (PathBuf, Vec<String>)>,
            seen: &mut HashSet<String>,
            out: &mut Vec<(String, PathBuf)>,
        ) -> Result<()> {
            if !seen.insert(n.to_string()) {
                return Ok(());
            }
            let (path, ds) = deps
                .get(n)
                .with_context(|| format!("module {n} not in modules.dep"))?;
            for d in ds.iter().rev() {
                visit(d, deps, seen, out)?;
            }
            let stem = path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.split(".ko").next())
                .unwrap_or(n)
                .to_string();
            out.push((stem, path.clone()));
            Ok(())
        }
        for w in wanted {
            visit(&norm(w), &deps, &mut seen, &mut out)?;
        }
        Ok(out)
    }
}
