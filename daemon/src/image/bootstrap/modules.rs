//! Stage 2, kernel modules: the releases in a modules tarball, unpacking it
//! into the tree and `depmod`.

use std::ffi::OsStr;
use std::path::Path;

use super::super::ImageError;
use super::options::bad_arg;
use super::process::run_tool;
use super::scratch::Scratch;

/// The kernel releases in a modules tarball's member list (one member a
/// line, as `tar -t` prints them). Every member must be under
/// `lib/modules/` (a leading `./` is allowed).
pub fn module_releases(listing: &str) -> Result<Vec<String>, String> {
    let mut releases: Vec<String> = Vec::new();
    for member in listing.lines().filter(|l| !l.is_empty()) {
        let m = member.trim_start_matches("./");
        if m.is_empty() || m == "lib/" || m == "lib" || m == "lib/modules" || m == "lib/modules/" {
            continue;
        }
        let Some(rest) = m.strip_prefix("lib/modules/") else {
            return Err(format!(
                "member `{member}` is not under lib/modules/ (the tarball must hold \
                 lib/modules/<release>/...)"
            ));
        };
        let release = rest.split('/').next().unwrap_or("");
        if !releases.iter().any(|r| r == release) {
            releases.push(release.to_string());
        }
    }
    if releases.is_empty() {
        return Err("it holds no lib/modules/<release>/ directory".into());
    }
    Ok(releases)
}

/// Lists a modules tarball (`tar -tzf`) and returns its kernel releases.
pub(super) fn modules_listing(tarball: &Path, log: &Path) -> Result<Vec<String>, ImageError> {
    let args = [OsStr::new("-tzf"), tarball.as_os_str()];
    run_tool("tar", &args, Some(log), None, &[]).map_err(|e| {
        bad_arg(
            "--modules",
            &tarball.display().to_string(),
            &format!("not a readable .tar.gz: {e}"),
        )
    })?;
    let listing = std::fs::read_to_string(log).map_err(|e| ImageError::io(log, e))?;
    module_releases(&listing)
        .map_err(|why| bad_arg("--modules", &tarball.display().to_string(), &why))
}

/// Stage 2, modules: the tarball is unpacked into the tree through its
/// `/lib -> usr/lib` symlink (`--keep-directory-symlink`, so merged /usr
/// stays merged), owned by root, and `depmod` run for each release.
pub(super) fn install_modules(
    tarball: &Path,
    releases: &[String],
    s: &Scratch,
) -> Result<(), ImageError> {
    let root = s.root();
    let log = s.dir.join("modules.log");
    let args = [
        OsStr::new("-xzf"),
        tarball.as_os_str(),
        OsStr::new("-C"),
        root.as_os_str(),
        OsStr::new("--keep-directory-symlink"),
        OsStr::new("--no-same-owner"),
    ];
    run_tool("tar", &args, Some(&log), None, &[])?;
    if !std::fs::symlink_metadata(root.join("lib")).is_ok_and(|m| m.is_symlink()) {
        return Err(ImageError::WrongKind {
            path: root.join("lib"),
            why: "is no longer the symlink to usr/lib after unpacking the modules".into(),
        });
    }
    for r in releases {
        let dir = root.join("usr/lib/modules").join(r);
        if !dir.is_dir() {
            return Err(ImageError::WrongKind {
                path: dir,
                why: "missing after unpacking the modules".into(),
            });
        }
        let args = [OsStr::new("-b"), root.as_os_str(), OsStr::new(r)];
        run_tool("depmod", &args, Some(&log), None, &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::super::super::tools;
    use super::super::customize::tests::fake_tree;
    use super::*;

    #[test]
    fn module_releases_from_listing() {
        let l = "lib/modules/\nlib/modules/6.1.0-37-cloud-amd64/\n\
                 lib/modules/6.1.0-37-cloud-amd64/modules.order\n\
                 ./lib/modules/6.12.0/kernel/x.ko\n";
        assert_eq!(
            module_releases(l).unwrap(),
            ["6.1.0-37-cloud-amd64", "6.12.0"]
        );
        assert!(module_releases("etc/passwd\n")
            .unwrap_err()
            .contains("etc/passwd"));
        assert!(module_releases("lib/modules/\n").is_err());
    }

    #[test]
    fn modules_go_to_usr_lib_through_the_lib_symlink() {
        let s = fake_tree("modules");
        let root = s.root();
        let src = s.dir.join("src");
        std::fs::create_dir_all(src.join("lib/modules/9.9.9-test/kernel")).unwrap();
        std::fs::write(src.join("lib/modules/9.9.9-test/modules.order"), "").unwrap();
        let tarball = s.dir.join("m.tar.gz");
        let out = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-czf")
            .arg(&tarball)
            .arg("lib/modules")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let releases = modules_listing(&tarball, &s.dir.join("list.log")).unwrap();
        assert_eq!(releases, ["9.9.9-test"]);
        if tools::find("depmod").is_none() {
            eprintln!("depmod (kmod) is missing: checking the unpacking only");
        }
        let r = install_modules(&tarball, &releases, &s);
        assert!(std::fs::symlink_metadata(root.join("lib"))
            .unwrap()
            .is_symlink());
        assert!(root
            .join("usr/lib/modules/9.9.9-test/modules.order")
            .is_file());
        if tools::find("depmod").is_some() {
            r.unwrap();
            assert!(root
                .join("usr/lib/modules/9.9.9-test/modules.dep")
                .is_file());
        }
        let base = s.dir.parent().unwrap().to_path_buf();
        drop(s);
        assert!(
            std::fs::read_dir(&base).unwrap().next().is_none(),
            "scratch dir left"
        );
        std::fs::remove_dir_all(base).unwrap();
    }
}
