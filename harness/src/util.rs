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
