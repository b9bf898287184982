//! Judging a run after its host VM ended: the guest logs read back from the
//! work disk, the reported assertions against the expected ones, the
//! harness-side checks on the work files and the inventory snapshot.

use super::work::Work;
use super::{Monitor, Outcome, HOST_CONSOLE_LOG};
use crate::checks::{self, Assertion};
use crate::scenario::{PostCheck, Scenario};
use crate::snapshot;
use anyhow::Result;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Adds to `out` every reason `s` failed, and to `notes` the run's logs,
/// assertions and checks; removes the big work files of a passing run.
pub(super) fn judge(
    s: &Scenario,
    monitor: Monitor,
    dir: &Path,
    work: &Work,
    asserts: &[Assertion],
    out: &mut Outcome,
    notes: &mut String,
) -> Result<()> {
    // Results back from the work disk.
    checks::debugfs_rdump(&work.img, "/out", dir)?;
    let mut guest = String::new();
    for n in 1..=s.boots {
        let p = dir.join("out").join(format!("guest-{n}.log"));
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = writeln!(guest, "===== boot {n} ({}) =====\n{text}", monitor.name());
    }
    let guest_log = dir.join("guest-console.log");
    std::fs::write(&guest_log, &guest)?;
    let _ = writeln!(
        notes,
        "logs: host console {}\n      guest console {}\n      conf {}\n      command lines {}",
        dir.join(HOST_CONSOLE_LOG).display(),
        guest_log.display(),
        dir.join("colinux.conf").display(),
        dir.join("qemu-cmdline.txt").display()
    );

    // Assertions.
    for a in asserts.iter().filter(|a| !a.pass) {
        out.reasons.push(format!(
            "assertion {} {} FAIL: {}",
            a.scenario, a.name, a.detail
        ));
    }
    for e in &s.expect {
        if !asserts.iter().any(|a| &a.name == e && a.pass) {
            out.reasons
                .push(format!("expected assertion {e} PASS was not reported"));
        }
    }
    let _ = writeln!(notes, "assertions:");
    for a in asserts {
        let _ = writeln!(
            notes,
            "  {} {} {} {}",
            a.scenario,
            a.name,
            if a.pass { "PASS" } else { "FAIL" },
            a.detail
        );
    }

    // Harness-side checks on the work files after the run.
    let after = dir.join("after");
    std::fs::create_dir_all(&after)?;
    for p in &s.post {
        let file = match p {
            PostCheck::Unchanged { file }
            | PostCheck::Pattern { file, .. }
            | PostCheck::E2fsck { file } => file,
        };
        let dest = after.join(file);
        if !dest.exists() {
            if let Err(e) = checks::debugfs_dump(&work.img, &format!("/{file}"), &dest) {
                out.reasons.push(format!("post check on {file}: {e:#}"));
                continue;
            }
        }
        let r = match p {
            PostCheck::Unchanged { file } => match work.made.get(file) {
                Some(m) => checks::check_unchanged(&dest, &m.sha256),
                None => Err(format!("{file} is not a generated work file")),
            },
            PostCheck::Pattern {
                seed,
                blocks,
                stride,
                ..
            } => checks::check_pattern(&dest, *seed, *blocks, *stride),
            PostCheck::E2fsck { .. } => checks::check_e2fsck(&dest),
        };
        let _ = writeln!(
            notes,
            "post {p:?}: {}",
            r.as_ref().err().map_or("ok", |e| e.as_str())
        );
        if let Err(e) = r {
            out.reasons.push(format!("post check: {e}"));
        }
    }

    // A snapshot of what the guest sees.
    if let Some(name) = &s.snapshot {
        let inv = snapshot::inventory(&guest);
        std::fs::write(dir.join("inventory.txt"), &inv)?;
        if inv.trim().is_empty() {
            out.reasons
                .push("no COLINUX-INV inventory in the guest console".into());
        } else if let Err(e) = snapshot::compare(name, &inv) {
            out.reasons.push(e);
        }
    }

    // Big files are only kept when they explain a failure.
    if out.reasons.is_empty() {
        let _ = std::fs::remove_file(&work.img);
        let _ = std::fs::remove_dir_all(&after);
        for m in work.made.values() {
            let _ = std::fs::set_permissions(&m.path, std::fs::Permissions::from_mode(0o644));
            let _ = std::fs::remove_file(&m.path);
        }
    }
    Ok(())
}
