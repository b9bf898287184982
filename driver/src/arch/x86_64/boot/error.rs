//! Why a boot image or boot structure could not be placed in guest memory.

use std::path::{Path, PathBuf};

/// Errors loading boot images.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is neither a bzImage nor an ELF vmlinux, or the loader refused it.
    #[error("{path}: not a kernel this monitor can boot: {why}")]
    BadKernel {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The initrd does not fit in guest RAM.
    #[error("{path}: initrd of {size} bytes does not fit below {limit:#x} in guest RAM")]
    InitrdTooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Highest usable end address.
        limit: u64,
    },
    /// The command line is longer than the kernel accepts.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The command line has what a kernel command line cannot hold.
    #[error("kernel command line refused: {0}")]
    BadCmdline(String),
    /// Writing to guest memory failed (address outside RAM).
    #[error("writing {what} to guest memory at {addr:#x} failed")]
    GuestWrite {
        /// What was written.
        what: &'static str,
        /// Where.
        addr: u64,
    },
}

/// Maps an I/O error on `path` to [`LoadError::Io`].
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_owned(),
        source,
    }
}
