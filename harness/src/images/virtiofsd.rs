//! virtiofsd, the virtio-fs project's vhost-user daemon, for the inner QEMU
//! reference's `cofsN=` shares (`vhost-user-fs-pci`). Debian 12 has no
//! package of it, so it is built once from crates.io with
//! `cargo install virtiofsd --version V --locked` (it links Debian's
//! libseccomp and libcap-ng, from libseccomp-dev and libcap-ng-dev) into
//! `<images>/virtiofsd/V/bin/virtiofsd`, kept there across image builds: a
//! new [`VERSION`] builds anew. The build's output goes to
//! `<images>/virtiofsd/build-V.log`, kept (with the build directory, so a
//! retry goes on where it stopped) when it fails.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The virtiofsd release the host VM gets.
pub const VERSION: &str = "1.14.0";

/// How often a running build says it is still going.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Where the built binary of `version` lives under `images`.
pub fn binary_path(images: &Path, version: &str) -> PathBuf {
    images
        .join("virtiofsd")
        .join(version)
        .join("bin")
        .join("virtiofsd")
}

/// The virtiofsd binary of [`VERSION`], built now if it is not there yet.
pub fn ensure(images: &Path) -> Result<PathBuf> {
    let bin = binary_path(images, VERSION);
    if bin.is_file() {
        eprintln!("images: virtiofsd {VERSION} (cached, {})", bin.display());
        return Ok(bin);
    }
    let base = images.join("virtiofsd");
    let root = base.join(VERSION);
    let build_dir = base.join("build");
    let log = base.join(format!("build-{VERSION}.log"));
    std::fs::create_dir_all(&base)?;
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "install",
        "virtiofsd",
        "--version",
        VERSION,
        "--locked",
        "--root",
    ])
    .arg(&root)
    .arg("--target-dir")
    .arg(&build_dir)
    // Not this workspace's settings: a plain crates.io build.
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET")
    .current_dir(&base)
    .stdin(Stdio::null())
    .stdout(out.try_clone()?)
    .stderr(out);
    eprintln!(
        "images: virtiofsd {VERSION}: cargo install from crates.io (once; a few minutes), log {}",
        log.display()
    );
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("starting cargo install virtiofsd")?;
    let mut said = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            eprintln!(
                "images: virtiofsd still building ({:.0}s): {}",
                t0.elapsed().as_secs_f64(),
                last_line(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() || !bin.is_file() {
        bail!(
            "cargo install virtiofsd {VERSION} failed ({status}): {}; full log {} \
             (it needs the Debian packages libseccomp-dev and libcap-ng-dev: `cargo xtask deps`)",
            last_line(&log),
            log.display()
        );
    }
    eprintln!(
        "images: virtiofsd {VERSION} built in {:.0}s: {}",
        t0.elapsed().as_secs_f64(),
        bin.display()
    );
    // The build tree is large and of no further use once the binary is in place.
    let _ = std::fs::remove_dir_all(&build_dir);
    Ok(bin)
}

/// The last non-empty line of a log file ("" when there is none).
fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_path_is_keyed_by_version() {
        let p = binary_path(Path::new("/img"), "1.2.3");
        assert_eq!(p, Path::new("/img/virtiofsd/1.2.3/bin/virtiofsd"));
        assert_ne!(p, binary_path(Path::new("/img"), "1.2.4"));
    }

    #[test]
    fn last_line_skips_blank_tail() {
        let d = std::env::temp_dir().join(format!("colinux-vfsd-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("log");
        std::fs::write(&f, "  Compiling a\n  Compiling b\n\n").unwrap();
        assert_eq!(last_line(&f), "Compiling b");
        assert_eq!(last_line(&d.join("none")), "");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
