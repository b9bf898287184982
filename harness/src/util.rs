//! Small helpers: running commands with clear errors, hashing files.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// Run a command to completion; fail with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Run a command and return its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of bytes, hex.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An incremental hash of named inputs (the cache key of an image).
#[derive(Default)]
pub struct InputHash(Sha256);

impl InputHash {
    /// Add a labelled string.
    pub fn text(&mut self, label: &str, v: &str) -> &mut Self {
        self.0.update(label.as_bytes());
        self.0.update([0]);
        self.0.update(v.as_bytes());
        self.0.update([0]);
        self
    }
    /// Add a file's content (by its hash), labelled with its path.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self> {
        let h = sha256_file(path)?;
        Ok(self.text(&path.display().to_string(), &h))
    }
    /// Add every file under a directory, in sorted order.
    pub fn tree(&mut self, dir: &Path) -> Result<&mut Self> {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        for f in files {
            self.file(&f)?;
        }
        Ok(self)
    }
    /// The hex digest.
    pub fn finish(&self) -> String {
        hex(&self.0.clone().finalize())
    }
}

/// All regular files under `dir` (recursively).
pub fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// MiB free (for an unprivileged writer) on the file system holding `path`,
/// from `df`; `None` when df cannot tell. The harness says it where a full
/// disk would otherwise show only as odd failures (a host VM paused on
/// `io-error`, work directories that cannot be made).
pub fn free_mib(path: &Path) -> Option<u64> {
    // df needs a path that exists: the nearest existing ancestor's disk.
    let existing = path.ancestors().find(|p| p.exists())?;
    let out = Command::new("df")
        .args(["--output=avail", "-B1M"])
        .arg(existing)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_df_avail(&String::from_utf8_lossy(&out.stdout))
}

/// The number under df's `Avail` heading.
fn parse_df_avail(text: &str) -> Option<u64> {
    text.lines()
        .nth(1)?
        .trim()
        .trim_end_matches('M')
        .parse()
        .ok()
}

/// Below this much free space a failure is said to have a likely cause: a
/// scenario's work disk and the files read back from it take up to ~3 GiB.
pub const LOW_DISK_MIB: u64 = 3 * 1024;

#[cfg(test)]
mod disk_tests {
    use super::*;

    #[test]
    fn df_output_is_read_and_the_target_disk_has_a_figure() {
        assert_eq!(parse_df_avail("Avail\n  51234\n"), Some(51234));
        assert_eq!(parse_df_avail("Avail\n"), None);
        assert_eq!(parse_df_avail("Avail\n  x\n"), None);
        let here = free_mib(Path::new("/")).expect("df answers for /");
        assert!(here > 0);
        let below = free_mib(Path::new("/no/such/dir/yet")).expect("df answers for its ancestor");
        assert!(below > 0);
    }
}
