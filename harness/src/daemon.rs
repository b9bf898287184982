//! The colinux-daemon binary: a release build from the workspace, and what it
//! says it can do (`colinux-daemon --capabilities`, a JSON array of strings).

use crate::paths;
use anyhow::{bail, Result};
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
    let Ok(mut child) = Command::new(bin)
        .arg("--capabilities")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return vec![];
    };
    // Never hang on a daemon that ignores the flag and starts a VM.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                if !st.success() {
                    return vec![];
                }
                let mut out = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut o, &mut out);
                }
                return parse_capabilities(&out);
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return vec![];
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
