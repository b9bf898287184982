//! Configuration errors: every one names where it happened (file and line, or
//! command-line word) and what was wrong, so a user can fix the word at fault.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a word came from: a configuration file or the daemon's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file given as `@file` (the path as it was opened).
    File(Arc<PathBuf>),
    /// A word given directly on the daemon's command line.
    CommandLine,
}

/// A position in a [`Source`]: the 1-based line in a file, or the 1-based
/// argument position on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file or the command line.
    pub source: Source,
    /// 1-based line (file) or argument position (command line).
    pub line: usize,
}

impl Location {
    /// A location in a file.
    pub fn file(path: Arc<PathBuf>, line: usize) -> Self {
        Self {
            source: Source::File(path),
            line,
        }
    }

    /// The `n`-th (1-based) word of the command line.
    pub fn command_line(n: usize) -> Self {
        Self {
            source: Source::CommandLine,
            line: n,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::File(p) => write!(f, "{}:{}", p.display(), self.line),
            Source::CommandLine => write!(f, "command line, word {}", self.line),
        }
    }
}

/// What went wrong with a configuration word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A known key with a value that does not fit.
    #[error("`{key}={value}`: expected {expected}")]
    BadValue {
        /// The key as written (e.g. `eth0`).
        key: String,
        /// The value as written.
        value: String,
        /// What the key accepts.
        expected: String,
    },
    /// `key=` with nothing after the `=`.
    #[error("`{key}=` has an empty value; expected {expected}")]
    EmptyValue {
        /// The key as written.
        key: String,
        /// What the key accepts.
        expected: String,
    },
    /// An indexed key (`cobd0`, `eth1`, `hda1`, ...) given twice.
    #[error("`{key}` double defined (first defined at {first})")]
    DoubleDefined {
        /// The key as written.
        key: String,
        /// Where it was first defined.
        first: Box<Location>,
    },
    /// An indexed key whose index is outside the allowed range.
    #[error("`{key}`: index {index} out of range; expected {prefix}0 .. {prefix}{max}")]
    IndexOutOfRange {
        /// The key as written.
        key: String,
        /// The key family (`cobd`, `eth`, ...).
        prefix: String,
        /// The index given.
        index: String,
        /// The largest index allowed.
        max: u32,
    },
    /// A key family written without its index (`cobd=...`).
    #[error("`{key}=...` needs an index, e.g. `{key}0=...`")]
    MissingIndex {
        /// The key as written.
        key: String,
    },
    /// A key coLinux had that this implementation does not support.
    #[error("`{key}` is not supported by coLinux-rs ({why})")]
    Unsupported {
        /// The key as written.
        key: String,
        /// Why, and what to use instead.
        why: String,
    },
    /// A `"` that is never closed on its line.
    #[error("unterminated quote in `{word}`")]
    UnterminatedQuote {
        /// The word (or its start) as written.
        word: String,
    },
    /// A control character (other than tab, CR and LF) in the text.
    #[error("unexpected control character U+{code:04X}")]
    ControlCharacter {
        /// The character's code point.
        code: u32,
    },
    /// Bytes that are not UTF-8.
    #[error("not valid UTF-8 text")]
    InvalidUtf8,
    /// An `@file` that could not be read.
    #[error("cannot read configuration file `{path}`: {message}")]
    Io {
        /// The path as written after `@`.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// An `@` with no file name after it.
    #[error("`@` must be followed by a configuration file name")]
    EmptyInclude,
    /// `@file` includes nested too deep (most likely a loop).
    #[error("`@{path}` nests configuration files deeper than {max} levels (an include loop?)")]
    TooDeep {
        /// The path as written.
        path: String,
        /// The nesting limit.
        max: usize,
    },
    /// The obsolete coLinux 0.6 XML configuration.
    #[error(
        "`{path}` is an XML configuration (coLinux 0.6); that format is obsolete: \
         write the settings as words (kernel=vmlinux cobd0=root.fs mem=256 ...) in a \
         file and run `colinux-daemon @file.conf`"
    )]
    XmlObsolete {
        /// The file.
        path: String,
    },
    /// The configuration needs something that is not there.
    #[error("{what}")]
    Missing {
        /// What is missing, in words.
        what: String,
    },
}

/// A configuration error: what went wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct ConfError {
    /// Where the faulty word is.
    pub location: Location,
    /// What is wrong with it.
    pub kind: ErrorKind,
}

impl ConfError {
    /// Builds an error at `location`.
    pub fn new(location: Location, kind: ErrorKind) -> Self {
        Self { location, kind }
    }

    /// The 1-based line (file) or word position (command line) of the error.
    pub fn line(&self) -> usize {
        self.location.line
    }
}
