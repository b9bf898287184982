//! One consistent QEMU: `qemu-system-x86` and `qemu-utils` of the same
//! version, from Debian's bookworm-backports suite on Debian 12.
//!
//! Why: these machines' base image ships `qemu-utils` 10.0 from
//! bookworm-backports; installing Debian 12's own `qemu-system-x86` (7.2)
//! replaces it, and a check before and after sees `qemu-utils` vanish (the
//! first-try failure of issue 11). QEMU 10 is also the better host VM here
//! (no "TCG doesn't support requested feature" lines, the nested setup's
//! figures in docs/ARCHITECTURE.md). So on bookworm both packages come from backports,
//! whatever the machine had before; on other releases from their own suite.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

/// The QEMU packages that must be installed together, at one version.
pub const QEMU_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils"];

/// The lowest QEMU major version the harness takes on Debian 12.
const MIN_MAJOR: u32 = 10;

/// Where the backports source goes when the machine has none.
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/colinux-bookworm-backports.sources";

/// The installed version of a Debian package, if it is installed.
pub fn installed_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status} ${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.strip_prefix("installed ")?;
    (out.status.success() && !version.is_empty()).then(|| version.to_string())
}

/// The upstream major version in a Debian version string
/// (`1:10.0.2+ds-2+deb13u1~bpo12+1` -> 10).
pub fn upstream_major(version: &str) -> Option<u32> {
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    upstream.split('.').next()?.parse().ok()
}

/// What is wrong with the installed QEMU set, given each package's
/// installed version (None = not installed); None when it is fine.
pub fn problem(versions: &[(&str, Option<String>)], on_bookworm: bool) -> Option<String> {
    let missing: Vec<&str> = versions
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        return Some(format!("not installed: {}", missing.join(" ")));
    }
    let first = versions.first()?.1.as_deref()?;
    if let Some((p, v)) = versions.iter().find(|(_, v)| v.as_deref() != Some(first)) {
        return Some(format!(
            "versions differ: {} {first}, {p} {}",
            versions[0].0,
            v.as_deref().unwrap_or("-")
        ));
    }
    if on_bookworm && upstream_major(first).is_some_and(|m| m < MIN_MAJOR) {
        return Some(format!(
            "QEMU {first} is Debian 12's own; the harness takes {MIN_MAJOR}.x from bookworm-backports"
        ));
    }
    None
}

/// The release codename from `/etc/os-release` (`bookworm`, ...).
fn codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The mirror URIs and keyring of the machine's own Debian source for
/// `suite`, read from deb822 `.sources` files or one-line `.list` files.
/// Returns (uris, signed_by).
pub fn debian_mirror(files: &[(String, String)], suite: &str) -> Option<(String, Option<String>)> {
    for (name, text) in files {
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|r| r.strip_prefix(':'))
                            .map(|v| v.trim().to_string())
                    })
                };
                let suites = field("Suites").unwrap_or_default();
                if suites.split_whitespace().any(|s| s == suite) {
                    if let Some(uris) = field("URIs") {
                        return Some((uris, field("Signed-By")));
                    }
                }
            }
        } else {
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.first() != Some(&"deb") {
                    continue;
                }
                // deb [options ...] URI SUITE COMPONENTS...: options may span words
                let after = if words.get(1).is_some_and(|w| w.starts_with('[')) {
                    words.iter().position(|w| w.ends_with(']')).unwrap_or(1) + 1
                } else {
                    1
                };
                let rest = &words[after.min(words.len())..];
                if rest.len() >= 2 && rest[1] == suite {
                    return Some((rest[0].to_string(), None));
                }
            }
        }
    }
    None
}

/// Every apt source file of the machine, by name and text.
fn apt_source_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("/etc/apt/sources.list".to_string(), t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let n = p.to_string_lossy().into_owned();
            if n.ends_with(".sources") || n.ends_with(".list") {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    files.push((n, t));
                }
            }
        }
    }
    files
}

/// Adds bookworm-backports with the URIs of the machine's existing bookworm
/// source (never a new host), unless some source already carries it.
fn ensure_backports_source() -> Result<bool> {
    let files = apt_source_files();
    if debian_mirror(&files, "bookworm-backports").is_some() {
        return Ok(false);
    }
    let Some((uris, signed_by)) = debian_mirror(&files, "bookworm") else {
        bail!("no apt source for bookworm found, so bookworm-backports cannot be added from the same mirror");
    };
    let mut text = format!(
        "# Added by `cargo xtask deps` (coLinux-rs): QEMU 10 for the harness.\n\
         Types: deb\nURIs: {uris}\nSuites: bookworm-backports\nComponents: main\n"
    );
    if let Some(k) = signed_by {
        text.push_str(&format!("Signed-By: {k}\n"));
    }
    std::fs::write(BACKPORTS_SOURCES, text)
        .with_context(|| format!("writing {BACKPORTS_SOURCES}"))?;
    eprintln!("deps: added bookworm-backports ({uris}) as {BACKPORTS_SOURCES}");
    Ok(true)
}

/// The versions of [`QEMU_PACKAGES`] installed now.
fn versions() -> Vec<(&'static str, Option<String>)> {
    QEMU_PACKAGES
        .iter()
        .map(|p| (*p, installed_version(p)))
        .collect()
}

/// Makes the QEMU set consistent (see the module doc); `install` runs
/// `apt-get install` with extra arguments and the packages.
pub fn ensure(install: impl Fn(&[&str], &[&str]) -> Result<()>) -> Result<()> {
    let on_bookworm = codename().as_deref() == Some("bookworm");
    let Some(why) = problem(&versions(), on_bookworm) else {
        return Ok(());
    };
    eprintln!("deps: QEMU: {why}; installing {}", QEMU_PACKAGES.join(" "));
    if on_bookworm {
        ensure_backports_source()?;
        install(&["-t", "bookworm-backports"], QEMU_PACKAGES)?;
    } else {
        install(&[], QEMU_PACKAGES)?;
    }
    if let Some(still) = problem(&versions(), on_bookworm) {
        bail!("after installing QEMU: {still}");
    }
    let v = versions();
    eprintln!(
        "deps: QEMU {} ({})",
        v[0].1.as_deref().unwrap_or("-"),
        QEMU_PACKAGES.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn the_major_version_is_read_past_the_epoch() {
        assert_eq!(upstream_major("1:10.0.2+ds-2+deb13u1~bpo12+1"), Some(10));
        assert_eq!(upstream_major("1:7.2+dfsg-7+deb12u18+b2"), Some(7));
        assert_eq!(upstream_major("8.2.1"), Some(8));
        assert_eq!(upstream_major("junk"), None);
    }

    #[test]
    fn a_mixed_or_old_set_is_a_problem_and_a_matching_new_one_is_not() {
        let new = "1:10.0.2+ds-2+deb13u1~bpo12+1";
        let old = "1:7.2+dfsg-7+deb12u18+b2";
        // the machine image: new qemu-utils, no qemu-system-x86
        let p = problem(&[("qemu-system-x86", None), ("qemu-utils", v(new))], true);
        assert!(p.unwrap().contains("not installed: qemu-system-x86"));
        let p = problem(&[("qemu-system-x86", v(old)), ("qemu-utils", v(new))], true);
        assert!(p.unwrap().contains("versions differ"));
        let p = problem(&[("qemu-system-x86", v(old)), ("qemu-utils", v(old))], true);
        assert!(p.unwrap().contains("bookworm-backports"));
        // Debian 12's own QEMU is fine on a release that is not bookworm
        assert_eq!(
            problem(
                &[("qemu-system-x86", v(old)), ("qemu-utils", v(old))],
                false
            ),
            None
        );
        assert_eq!(
            problem(&[("qemu-system-x86", v(new)), ("qemu-utils", v(new))], true),
            None
        );
    }

    #[test]
    fn the_backports_mirror_is_the_machines_own() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let files = vec![(
            "/etc/apt/sources.list.d/debian.sources".to_string(),
            deb822.to_string(),
        )];
        assert_eq!(
            debian_mirror(&files, "bookworm"),
            Some((
                "http://deb.debian.org/debian".into(),
                Some("/usr/share/keyrings/debian-archive-keyring.gpg".into())
            ))
        );
        assert_eq!(debian_mirror(&files, "bookworm-backports"), None);
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        let files = vec![("/etc/apt/sources.list".to_string(), list.to_string())];
        assert_eq!(
            debian_mirror(&files, "bookworm"),
            Some(("http://mirror.example/debian".into(), None))
        );
    }
}
