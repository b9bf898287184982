//! The files a build makes beside the image (the scratch directory, the
//! `.partial` files): removed again unless the build succeeds, else
//! published under their names.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::super::ImageError;

/// The files a build makes and removes again unless it succeeds.
pub(super) struct Scratch {
    /// The directory holding the tree, the tools' logs and their temp files.
    pub(super) dir: PathBuf,
    /// `FILE.partial` and `SWAP.partial`.
    pub(super) partials: Vec<PathBuf>,
}

impl Scratch {
    /// Makes the scratch directory `.NAME.bootstrap-PID` beside `image`.
    pub(super) fn new(image: &Path) -> Result<Self, ImageError> {
        let name = image.file_name().unwrap_or_default().to_string_lossy();
        let dir = image
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!(".{name}.bootstrap-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| ImageError::io(&dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(&dir, e))?;
        Ok(Scratch {
            dir,
            partials: Vec::new(),
        })
    }

    /// The tree mmdebstrap fills.
    pub(super) fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.partials {
            let _ = std::fs::remove_file(p);
        }
        remove_tree(&self.dir);
    }
}

/// Mount points at or under `dir` (from `/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Removes `dir` and everything in it, unless something is mounted there
/// (a host `/dev` bind mount left by a killed tool must never be emptied).
fn remove_tree(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        eprintln!(
            "colinux-image: not removing {}: still mounted there: {} (unmount, then remove it)",
            dir.display(),
            mounts.join(", ")
        );
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("colinux-image: cannot remove {}: {e}", dir.display());
    }
}

/// `FILE.partial`.
pub(super) fn partial_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Moves `from` to `to`: replacing `to` with `force`, else only if it
/// still does not exist (hard link, then unlink).
pub(super) fn publish(from: &Path, to: &Path, force: bool) -> Result<(), ImageError> {
    if force {
        return std::fs::rename(from, to).map_err(|e| ImageError::io(to, e));
    }
    std::fs::hard_link(from, to).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => ImageError::Exists { path: to.into() },
        _ => ImageError::io(to, e),
    })?;
    std::fs::remove_file(from).map_err(|e| ImageError::io(from, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_name() {
        assert_eq!(
            partial_of(Path::new("/d/debian.img")),
            Path::new("/d/debian.img.partial")
        );
    }
}
