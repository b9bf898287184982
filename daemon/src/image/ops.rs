//! The image operations: `create`, `mkswap` and `resize`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use super::detect::{detect, ImageKind};
use super::ext::ExtType;
use super::size::SECTOR;
use super::swap;
use super::tools;
use super::ImageError;

/// Creates `path` anew (never overwriting) and hands it to `fill`; on any
/// failure the half-made file is removed.
fn create_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => ImageError::Exists { path: path.into() },
            _ => ImageError::io(path, e),
        })?;
    let result =
        fill(&mut file).and_then(|()| file.sync_all().map_err(|e| ImageError::io(path, e)));
    if result.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    result
}

/// A size that is a whole number of sectors (image and swap sizes).
pub(crate) fn check_sectors(size: u64) -> Result<(), ImageError> {
    if !size.is_multiple_of(SECTOR) {
        return Err(ImageError::BadSize {
            text: size.to_string(),
            why: format!("not a multiple of the {SECTOR}-byte sector"),
        });
    }
    Ok(())
}

/// Creates a sparse image of `size` bytes (no host blocks used until the
/// guest writes). With `fs`, also makes an ext2/3/4 file system on it with
/// `mke2fs` (label optional).
pub fn create(
    path: &Path,
    size: u64,
    fs: Option<(ExtType, Option<&str>)>,
) -> Result<(), ImageError> {
    check_sectors(size)?;
    create_with(path, |f| {
        f.set_len(size).map_err(|e| ImageError::io(path, e))?;
        if let Some((kind, label)) = fs {
            let mut args = vec![
                "-F".to_string(),
                "-q".into(),
                "-t".into(),
                kind.name().into(),
            ];
            if let Some(l) = label {
                args.extend(["-L".to_string(), l.to_string()]);
            }
            args.push(path.display().to_string());
            let out = tools::run("mke2fs", &args)?;
            if out.code != Some(0) {
                return Err(ImageError::Tool {
                    program: "mke2fs".into(),
                    why: format!("exit status {:?}: {}", out.code, out.text.trim()),
                });
            }
        }
        Ok(())
    })
}

/// Creates a swap file of `size` bytes with a version-1 swap header (label
/// optional). Unless `sparse`, every block is written so the file also
/// works with `swapon` on a host (which refuses files with holes); a guest
/// using it as a cobd device does not care.
pub fn mkswap(
    path: &Path,
    size: u64,
    label: Option<&str>,
    sparse: bool,
) -> Result<String, ImageError> {
    check_sectors(size)?;
    let uuid = swap::random_uuid().map_err(|e| ImageError::io("/dev/urandom", e))?;
    let page = swap::header(size, uuid, label).map_err(|why| ImageError::SwapSize { size, why })?;
    create_with(path, |f| {
        let io = |e| ImageError::io(path, e);
        f.write_all(&page).map_err(io)?;
        if sparse {
            f.set_len(size).map_err(io)?;
        } else {
            let zeros = vec![0u8; 1 << 20];
            let mut left = size - page.len() as u64;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n]).map_err(io)?;
                left -= n as u64;
            }
        }
        Ok(())
    })?;
    Ok(swap::format_uuid(&uuid))
}

/// What `resize` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeReport {
    /// File size before.
    pub old_size: u64,
    /// File size after.
    pub new_size: u64,
    /// File system blocks before.
    pub old_blocks: u64,
    /// File system blocks after.
    pub new_blocks: u64,
    /// The block size.
    pub block_size: u64,
}

/// Grows an ext2/3/4 image to `new_size` bytes and its file system to fill
/// it, like the old toporesize: `e2fsck -fy` first (a damaged file system
/// is not touched further), then the file is extended and `resize2fs` run.
/// Shrinking is refused. The VM using the image must be stopped.
pub fn resize(path: &Path, new_size: u64) -> Result<ResizeReport, ImageError> {
    check_sectors(new_size)?;
    let before = detect(path)?;
    let ImageKind::Ext(fs) = &before.kind else {
        return Err(ImageError::WrongKind {
            path: path.into(),
            why: format!(
                "holds {} data, not an ext2/3/4 file system; resize only grows ext images",
                before.kind.name()
            ),
        });
    };
    if new_size < before.size {
        return Err(ImageError::Shrink {
            path: path.into(),
            current: before.size,
            requested: new_size,
        });
    }
    let target = path.display().to_string();
    let fsck = tools::run("e2fsck", ["-f", "-y", target.as_str()])?;
    // 0: clean, 1: errors corrected, 2: corrected (reboot advised); 4 and up: trouble.
    if !matches!(fsck.code, Some(0..=2)) {
        return Err(ImageError::Tool {
            program: "e2fsck".into(),
            why: format!(
                "exit status {:?}; the file system has errors it could not fix, so the image was \
                 left as it was:\n{}",
                fsck.code,
                fsck.text.trim()
            ),
        });
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| ImageError::io(path, e))?;
    file.set_len(new_size)
        .map_err(|e| ImageError::io(path, e))?;
    file.sync_all().map_err(|e| ImageError::io(path, e))?;
    drop(file);
    let grow = tools::run("resize2fs", [target.as_str()])?;
    if grow.code != Some(0) {
        return Err(ImageError::Tool {
            program: "resize2fs".into(),
            why: format!(
                "exit status {:?}; the file is now {new_size} bytes but the file system was not \
                 grown (it is intact at its old size):\n{}",
                grow.code,
                grow.text.trim()
            ),
        });
    }
    let after = detect(path)?;
    let new_blocks = match &after.kind {
        ImageKind::Ext(e) => e.block_count,
        _ => 0,
    };
    Ok(ResizeReport {
        old_size: before.size,
        new_size: after.size,
        old_blocks: fs.block_count,
        new_blocks,
        block_size: fs.block_size,
    })
}
