//! The colinux-daemon binary: a release build from the workspace, and what it
//! says it can do (`colinux-daemon --capabilities`, a JSON array of strings)
//! and which libraries it opens at run time (`--opened-libraries`).

use crate::paths;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// `cargo build --release -p colinux-daemon`; returns the binary's path.
pub fn build_release() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("daemon: cargo build --release -p colinux-daemon");
    let st = Command::new(cargo)
        .args(["build", "--release", "-p", "colinux-daemon"])
        .current_dir(paths::workspace_root())
        .status()?;
    if !st.success() {
        bail!("cargo build --release -p colinux-daemon failed ({st})");
    }
    let bin = paths::cargo_target_dir()
        .join("release")
        .join("colinux-daemon");
    if !bin.exists() {
        bail!("{} not produced by the build", bin.display());
    }
    Ok(bin)
}

/// Capabilities the daemon reports; empty when the flag is missing or fails.
pub fn capabilities(bin: &std::path::Path) -> Vec<String> {
    query(bin, "--capabilities")
        .map(|out| parse_capabilities(&out))
        .unwrap_or_default()
}

/// The shared libraries the daemon opens at run time (`--opened-libraries`,
/// one soname a line): `ldd` does not name them, so an image that carries the
/// daemon must be given them by name.
pub fn opened_libraries(bin: &std::path::Path) -> Result<Vec<String>> {
    let out = query(bin, "--opened-libraries").with_context(|| {
        format!(
            "{} --opened-libraries gave no list (an older build?)",
            bin.display()
        )
    })?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The daemon's stdout for one inspection flag, or None when it fails or
/// takes more than 10 s (a daemon that ignores the flag would start a VM).
fn query(bin: &std::path::Path, flag: &str) -> Option<String> {
    let mut child = Command::new(bin)
        .arg(flag)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                if !st.success() {
                    return None;
                }
                let mut out = String::new();
                std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
                return Some(out);
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Parse `--capabilities` output (a JSON array of strings); anything else is empty.
pub fn parse_capabilities(out: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(out.trim()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_or_empty() {
        assert_eq!(
            parse_capabilities("[\"boot\",\"cobd\"]\n"),
            vec!["boot", "cobd"]
        );
        assert!(parse_capabilities("usage: colinux-daemon ...").is_empty());
    }
}
