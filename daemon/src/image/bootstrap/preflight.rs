//! The checks made on a bootstrap's options before the long build starts,
//! so that a bad argument or a missing tool fails in a second, not after the
//! packages are downloaded.

use std::fs::File;
use std::path::Path;

use super::super::{ops, swap, tools, ImageError};
use super::customize::read_public_keys;
use super::options::{bad_arg, check_hostname, BootstrapOptions};
use super::process::package_of;

/// Refuses to replace `path` unless `force`.
fn check_new(path: &Path, force: bool) -> Result<(), ImageError> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(ImageError::Exists { path: path.into() });
    }
    Ok(())
}

/// Everything checked before the long build starts: sizes, files that would
/// be overwritten, the host name, the password, key files, the modules
/// tarball and the tools.
pub(super) fn preflight(o: &BootstrapOptions) -> Result<(), ImageError> {
    ops::check_sectors(o.size)?;
    check_new(&o.image, o.force)?;
    if let Some(s) = &o.swap {
        ops::check_sectors(s.size)?;
        swap::header(s.size, [0; 16], None)
            .map_err(|why| ImageError::SwapSize { size: s.size, why })?;
        check_new(&s.path, o.force)?;
        if s.path == o.image {
            return Err(bad_arg(
                "--swap",
                &s.path.display().to_string(),
                "it is the image itself",
            ));
        }
    }
    check_hostname(&o.hostname).map_err(|why| bad_arg("--hostname", &o.hostname, &why))?;
    if let Some(pw) = &o.root_password {
        if pw.contains(['\n', '\r', '\0']) {
            return Err(bad_arg(
                "--root-password",
                "(hidden)",
                "it holds a line break or NUL",
            ));
        }
    }
    for k in &o.authorized_keys {
        read_public_keys(k)?;
    }
    if let Some(m) = &o.modules {
        File::open(m).map_err(|e| ImageError::io(m, e))?;
        if !m.is_file() {
            return Err(bad_arg("--modules", &m.display().to_string(), "not a file"));
        }
    }
    for program in ["mmdebstrap", "mke2fs", "tar", "depmod", "chroot"] {
        if program == "depmod" && o.modules.is_none() {
            continue;
        }
        if tools::find(program).is_none() {
            return Err(ImageError::Tool {
                program: program.into(),
                why: format!(
                    "not found in PATH or /sbin (apt-get install {})",
                    package_of(program)
                ),
            });
        }
    }
    Ok(())
}
