//! Reading the console protocol and the harness-side checks on work files.

use crate::util::sha256_file;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// One `COLINUX-CHECK <scenario> <assertion> PASS|FAIL <detail>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Scenario name as the reporter saw it.
    pub scenario: String,
    /// Assertion name.
    pub name: String,
    /// PASS or not.
    pub pass: bool,
    /// Free text.
    pub detail: String,
}

/// Parse a console line as an assertion, if it is one (prefix noise allowed).
pub fn parse_assertion(line: &str) -> Option<Assertion> {
    let at = line.find("COLINUX-CHECK ")?;
    let mut it = line[at + "COLINUX-CHECK ".len()..].splitn(4, ' ');
    let scenario = it.next()?.to_string();
    let name = it.next()?.to_string();
    let pass = match it.next()? {
        "PASS" => true,
        "FAIL" => false,
        _ => return None,
    };
    Some(Assertion {
        scenario,
        name,
        pass,
        detail: it.next().unwrap_or("").trim().to_string(),
    })
}

/// A host-init boot mark `COLINUX-HOST BOOT <n> <KIND> <fields...>` (prefix
/// noise allowed): the boot number, the kind (START, READY, EXIT, MEM) and
/// the words after it. One parser for the runner's timing marks, the
/// watchdog's phases and the guest-reset rule.
pub fn parse_boot_mark(line: &str) -> Option<(u32, &str, Vec<&str>)> {
    let at = line.find("COLINUX-HOST BOOT ")?;
    let mut f = line[at + "COLINUX-HOST BOOT ".len()..].split_whitespace();
    let n = f.next()?.parse().ok()?;
    let kind = f.next()?;
    Some((n, kind, f.collect()))
}

/// The 4 KiB block the cobd-io guest check writes at block `b` with `seed`:
/// the line "cobd-io seed=S block=B\n" repeated, cut to 4096 bytes.
pub fn pattern_block(seed: u64, b: u64) -> Vec<u8> {
    let line = format!("cobd-io seed={seed} block={b}\n");
    line.bytes().cycle().take(4096).collect()
}

/// Check `file` holds the cobd-io pattern: block (i*stride+seed) mod nblocks for
/// i in 0..blocks is `pattern_block`, every other byte is zero.
pub fn check_pattern(file: &Path, seed: u64, blocks: u64, stride: u64) -> Result<(), String> {
    let data = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let nblk = data.len() as u64 / 4096;
    if nblk == 0 {
        return Err(format!("{} is empty", file.display()));
    }
    let mut expected = vec![0u8; data.len()];
    for i in 0..blocks {
        let b = (i * stride + seed) % nblk;
        let off = (b * 4096) as usize;
        expected[off..off + 4096].copy_from_slice(&pattern_block(seed, b));
    }
    match data.iter().zip(&expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(p) => Err(format!(
            "{}: first difference at byte {p} (block {}): got {:#04x}, expected {:#04x}",
            file.display(),
            p / 4096,
            data[p],
            expected[p]
        )),
    }
}

/// Compare a file's SHA-256 with the one recorded before the run.
pub fn check_unchanged(file: &Path, before: &str) -> Result<(), String> {
    let now = sha256_file(file).map_err(|e| format!("{e:#}"))?;
    if now == before {
        Ok(())
    } else {
        Err(format!(
            "{} changed: sha256 {before} -> {now}",
            file.display()
        ))
    }
}

/// `e2fsck -fn` on an image file; Err holds its report.
pub fn check_e2fsck(file: &Path) -> Result<(), String> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run e2fsck: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "e2fsck -fn {} exited {}: {}{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Dump a file out of an ext4 image with debugfs (no mount needed), keeping
/// its holes: `debugfs cat` streams it and all-zero blocks are seeked over,
/// so a 2 GiB system image with 400 MiB in use costs 400 MiB on the outer
/// disk (`dump` would write every byte).
pub fn debugfs_dump(image: &Path, inside: &str, dest: &Path) -> Result<()> {
    let mut child = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {inside}"))
        .arg(image)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running debugfs")?;
    let stdout = child.stdout.take().context("debugfs stdout")?;
    let written = crate::workdisk::sparse_write(stdout, dest)
        .with_context(|| format!("writing {}", dest.display()));
    let out = child.wait_with_output().context("waiting for debugfs")?;
    if written.is_err() {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_file(dest);
    }
    written?;
    // debugfs exits 0 even for a missing file; its complaint is the tell
    // (the first stderr line is only its version banner).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaint: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !out.status.success() || !complaint.is_empty() {
        let _ = std::fs::remove_file(dest);
        bail!(
            "debugfs could not dump {inside} from {}: {}",
            image.display(),
            complaint.join("; ")
        );
    }
    Ok(())
}

/// Dump a directory out of an ext4 image with debugfs `rdump`.
pub fn debugfs_rdump(image: &Path, inside: &str, dest_parent: &Path) -> Result<()> {
    std::fs::create_dir_all(dest_parent)?;
    Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump {inside} {}", dest_parent.display()))
        .arg(image)
        .output()
        .context("running debugfs")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn assertion_lines() {
        let a = parse_assertion("[  1.0] COLINUX-CHECK boot mem PASS MemTotal=1 kB").unwrap();
        assert_eq!(a.name, "mem");
        assert!(a.pass);
        assert_eq!(a.detail, "MemTotal=1 kB");
        assert!(parse_assertion("COLINUX-CHECK boot mem MAYBE x").is_none());
        assert!(!parse_assertion("COLINUX-CHECK s a FAIL").unwrap().pass);
    }

    #[test]
    fn pattern_block_matches_shell_yes_head() {
        // `yes "cobd-io seed=7 block=3" | head -c 4096`
        let b = pattern_block(7, 3);
        assert_eq!(b.len(), 4096);
        assert!(b.starts_with(b"cobd-io seed=7 block=3\ncobd-io seed=7"));
    }

    proptest! {
        #[test]
        fn pattern_roundtrip_and_detects_flip(seed in 0u64..10_000, flip in 0usize..(64 * 4096)) {
            let dir = std::env::temp_dir().join(format!("colinux-pat-{}-{seed}-{flip}", std::process::id()));
            let nblk = 64u64;
            let mut data = vec![0u8; (nblk * 4096) as usize];
            for i in 0..8 {
                let b = (i * 5 + seed) % nblk;
                data[(b * 4096) as usize..][..4096].copy_from_slice(&pattern_block(seed, b));
            }
            std::fs::write(&dir, &data).unwrap();
            prop_assert!(check_pattern(&dir, seed, 8, 5).is_ok());
            data[flip] ^= 1;
            std::fs::write(&dir, &data).unwrap();
            prop_assert!(check_pattern(&dir, seed, 8, 5).is_err());
            std::fs::remove_file(&dir).unwrap();
        }
    }
}
