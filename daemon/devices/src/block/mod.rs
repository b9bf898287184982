//! Host files behind `cobdN`: opening, validation, locking and the byte-level
//! operations the virtio-blk device needs.
//!
//! [`DiskImage::open`] refuses, before the guest starts and with the path in the
//! message, a Windows-style path, a missing file, a directory, a file the user
//! may not read, and an image another daemon holds. A file the user may not
//! write is opened read-only (as classic coLinux did) unless read-write was
//! explicitly demanded.
//!
//! Locking: an open-file-description lock (`F_OFD_SETLK`) on byte 0 — write
//! lock for read-write images, read lock for read-only ones — gives the
//! exclusion (it also conflicts between two opens inside one process). OFD
//! locks do not reveal their owner, so a classic POSIX lock of the same kind on
//! byte 1 is taken too; a refused opener asks `F_GETLK` about byte 1 and names
//! the holder's pid.

mod backend;
mod lock;

pub use backend::BlockBackend;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// Bytes per sector, as the guest sees the disk.
pub const SECTOR_SIZE: u64 = 512;

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A `C:\...` or `\\server\...` path on a Linux host.
    #[error("{path}: this is a Windows path; on this host give the image's host path (e.g. /srv/colinux/root.img)")]
    WindowsPath {
        /// The path as given.
        path: PathBuf,
    },
    /// The file does not exist.
    #[error("{path}: image file not found")]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{path}: is a directory, not an image file")]
    IsDirectory {
        /// The path as given.
        path: PathBuf,
    },
    /// A character device, FIFO or socket: nothing with a fixed size.
    #[error("{path}: not a regular file or block device")]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
    /// The user may not open the file (at all, or read-write when demanded).
    #[error("{path}: permission denied opening the image {mode}")]
    PermissionDenied {
        /// The path as given.
        path: PathBuf,
        /// "read-only" or "read-write".
        mode: &'static str,
    },
    /// Another daemon (or another cobd of this one) has the image open.
    #[error("{path}: image is in use by {holder}; refusing to open it {mode}")]
    InUse {
        /// The path as given.
        path: PathBuf,
        /// Description of the holder (with its pid when known).
        holder: String,
        /// "read-only" or "read-write".
        mode: &'static str,
    },
    /// Any other I/O failure while opening, sizing or locking.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The path as given.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
}

/// An opened, locked, sized image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    read_only: bool,
    size: u64,
    discard: bool,
}

/// True for `C:\x`, `c:/x`, `C:` and UNC `\\server\share` forms.
pub fn is_windows_path(path: &Path) -> bool {
    let s = path.to_string_lossy();
    let b = s.as_bytes();
    let drive = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b.len() == 2 || b[2] == b'\\' || b[2] == b'/');
    drive || s.starts_with("\\\\")
}

fn mode_name(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "read-write"
    }
}

impl DiskImage {
    /// Opens `path`. With `read_only` false the image is opened read-write if the
    /// user may write it and read-only otherwise (check [`DiskImage::read_only`]);
    /// with `read_only` true it is always opened `O_RDONLY`.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, ImageError> {
        let p = || path.to_path_buf();
        if is_windows_path(path) {
            return Err(ImageError::WindowsPath { path: p() });
        }
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::NotFound { path: p() },
            io::ErrorKind::PermissionDenied => ImageError::PermissionDenied {
                path: p(),
                mode: "read-only",
            },
            _ => ImageError::Io {
                path: p(),
                what: "cannot stat image",
                source: e,
            },
        })?;
        if meta.is_dir() {
            return Err(ImageError::IsDirectory { path: p() });
        }
        let is_block = meta.file_type().is_block_device();
        if !meta.is_file() && !is_block {
            return Err(ImageError::NotAFile { path: p() });
        }
        let (file, ro) = Self::open_file(path, read_only)?;
        let mut file = file;
        let size = if is_block {
            file.seek(SeekFrom::End(0)).map_err(|e| ImageError::Io {
                path: p(),
                what: "cannot size block device",
                source: e,
            })?
        } else {
            meta.len()
        };
        if !size.is_multiple_of(SECTOR_SIZE) {
            tracing::warn!(path = %path.display(), size, "image size is not a multiple of 512; the tail is not visible to the guest");
        }
        lock::acquire(&file, ro).map_err(|e| match e {
            lock::LockError::Held(holder) => ImageError::InUse {
                path: p(),
                holder,
                mode: mode_name(ro),
            },
            lock::LockError::Io(source) => ImageError::Io {
                path: p(),
                what: "cannot lock image",
                source,
            },
        })?;
        let discard = !ro && !is_block && probe_punch_hole(&file, size);
        Ok(DiskImage {
            file,
            path: p(),
            read_only: ro,
            size,
            discard,
        })
    }

    fn open_file(path: &Path, read_only: bool) -> Result<(File, bool), ImageError> {
        let p = || path.to_path_buf();
        let denied = |e: &io::Error| {
            e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
        };
        if !read_only {
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => return Ok((f, false)),
                Err(e) if denied(&e) => {
                    tracing::warn!(path = %path.display(), "image is not writable by this user; the guest gets it read-only");
                }
                Err(e) => {
                    return Err(ImageError::Io {
                        path: p(),
                        what: "cannot open image read-write",
                        source: e,
                    })
                }
            }
        }
        match File::open(path) {
            Ok(f) => Ok((f, true)),
            Err(e) if denied(&e) => Err(ImageError::PermissionDenied {
                path: p(),
                mode: "read-only",
            }),
            Err(e) => Err(ImageError::Io {
                path: p(),
                what: "cannot open image",
                source: e,
            }),
        }
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the guest may only read.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size in 512-byte sectors (a partial last sector is not counted).
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR_SIZE
    }

    /// Whether discard (punching holes) works on this file.
    pub fn supports_discard(&self) -> bool {
        self.discard
    }

    /// Reads exactly `buf.len()` bytes at `offset`; past end of file reads zeros.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        self.file.write_all_at(buf, offset)
    }

    /// Makes written data durable (`fdatasync`).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "image is read-only",
            ));
        }
        Ok(())
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, l) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Deallocates `[offset, offset + len)`; it then reads as zeros.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Zeroes `[offset, offset + len)`: by punching a hole when `unmap` is allowed,
    /// else by `FALLOC_FL_ZERO_RANGE`, else by writing zeros.
    pub fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        self.check_writable()?;
        if unmap && self.discard && self.discard(offset, len).is_ok() {
            return Ok(());
        }
        if self
            .fallocate(
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
            .is_ok()
        {
            return Ok(());
        }
        let zeros = vec![0u8; 64 * 1024];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Punching a hole past the end of the file changes nothing but tells whether
/// the file system supports it.
fn probe_punch_hole(file: &File, size: u64) -> bool {
    let Ok(off) = libc::off_t::try_from(size) else {
        return false;
    };
    // SAFETY: fallocate on a descriptor we own, in a range past end of file.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            SECTOR_SIZE as libc::off_t,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("C:\\coLinux\\root.img", true)]
    #[case("c:/colinux/root.img", true)]
    #[case("D:", true)]
    #[case("\\\\server\\share\\disk.img", true)]
    #[case("/srv/colinux/root.img", false)]
    #[case("relative/C:/x", false)]
    #[case("c:file", false)]
    #[case("", false)]
    fn windows_paths_are_recognised(#[case] path: &str, #[case] windows: bool) {
        assert_eq!(is_windows_path(Path::new(path)), windows);
    }
}
