//! Writing into the image's directory tree: new files (never through a
//! link that was there) and symlinks.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::super::ImageError;

/// Writes `text` as a new file `path` with `mode` (an existing file or
/// symlink there is removed first, so nothing is written through a link).
pub(super) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ImageError> {
    let io = |e| ImageError::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)
}

/// Makes the symlink `path` -> `target` (replacing what is there).
pub(super) fn symlink(target: &str, path: &Path) -> Result<(), ImageError> {
    let io = |e| ImageError::io(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).map_err(io)
}
