//! Errors of the image tools, each naming the file and what to do.

use std::path::PathBuf;

/// What went wrong with an image operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A SIZE argument that does not parse.
    #[error("bad size `{text}`: {why} (write e.g. 512M, 2G, 1536K or 1T)")]
    BadSize {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// `create`/`mkswap` would overwrite a file.
    #[error("`{}` already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// `resize` to a size not larger than the image.
    #[error("`{}` is {current} bytes; the new size {requested} bytes is smaller: shrinking is not supported", path.display())]
    Shrink {
        /// The image.
        path: PathBuf,
        /// Its size now.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
    /// The image is not what the operation needs.
    #[error("`{}`: {why}", path.display())]
    WrongKind {
        /// The image.
        path: PathBuf,
        /// What was expected and found.
        why: String,
    },
    /// A swap size outside what the swap format holds.
    #[error("swap size {size} bytes: {why}")]
    SwapSize {
        /// The size asked for.
        size: u64,
        /// Why it does not fit.
        why: String,
    },
    /// An external program (e2fsck, resize2fs) is missing or failed.
    #[error("{program}: {why}")]
    Tool {
        /// The program.
        program: String,
        /// What happened (exit status and its output).
        why: String,
    },
    /// A command-line value that cannot be used (exit status 2).
    #[error("{what} `{value}`: {why}")]
    BadArgument {
        /// The option or argument.
        what: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// SIGINT or SIGTERM stopped the operation (it cleaned up first).
    #[error("stopped by signal {signal}; nothing of the build was kept")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// An I/O error on a file.
    #[error("`{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl ImageError {
    /// Wraps an I/O error with its file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}
