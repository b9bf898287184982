//! Turning command-line arguments and `@file`s into one ordered list of words,
//! each remembering where it came from and which directory its relative paths
//! are relative to.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ConfError, ErrorKind, Location};
use crate::lexer;

/// How deep `@file` may nest inside files (guards against include loops).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// Configuration files larger than this are refused (they are a few KiB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// One configuration word in order, with its origin.
#[derive(Debug, Clone)]
pub struct Word {
    /// The word as written (quotes kept).
    pub text: String,
    /// Where it was written.
    pub location: Location,
    /// Directory relative paths in it are relative to.
    pub base_dir: Arc<PathBuf>,
}

/// Expands command-line arguments: `@file` words are replaced, where they
/// stand, by the words of the file; other arguments are words themselves.
/// Returns the words and the directory of the first configuration file.
pub fn expand_args<I, S>(
    args: I,
    cwd: &Path,
) -> Result<(Vec<Word>, Option<Arc<PathBuf>>), ConfError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cwd = Arc::new(cwd.to_path_buf());
    let mut out = Vec::new();
    let mut first_dir = None;
    for (i, arg) in args.into_iter().enumerate() {
        let location = Location::command_line(i + 1);
        let Some(text) = arg.as_ref().to_str() else {
            return Err(ConfError::new(location, ErrorKind::InvalidUtf8));
        };
        if let Some(path) = text.strip_prefix('@') {
            let dir = include(path, &cwd, &location, 0, &mut out)?;
            first_dir.get_or_insert(dir);
            continue;
        }
        lexer::check_word(text).map_err(|k| ConfError::new(location.clone(), k))?;
        out.push(Word {
            text: text.to_string(),
            location,
            base_dir: cwd.clone(),
        });
    }
    Ok((out, first_dir))
}

/// Reads `@path` (relative to `base`) and appends its words; returns the
/// file's directory.
fn include(
    written: &str,
    base: &Path,
    at: &Location,
    depth: usize,
    out: &mut Vec<Word>,
) -> Result<Arc<PathBuf>, ConfError> {
    include_path(&lexer::unquote(written), base, at, depth, out)
}

/// Reads the file `unquoted` (relative to `base`) and appends its words;
/// returns the file's directory.
pub fn include_path(
    unquoted: &str,
    base: &Path,
    at: &Location,
    depth: usize,
    out: &mut Vec<Word>,
) -> Result<Arc<PathBuf>, ConfError> {
    let err = |kind| ConfError::new(at.clone(), kind);
    let unquoted = unquoted.to_string();
    if unquoted.is_empty() {
        return Err(err(ErrorKind::EmptyInclude));
    }
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(err(ErrorKind::TooDeep {
            path: unquoted,
            max: MAX_INCLUDE_DEPTH,
        }));
    }
    let path = base.join(&unquoted);
    let io_err = |e: std::io::Error| {
        ConfError::new(
            at.clone(),
            ErrorKind::Io {
                path: unquoted.clone(),
                message: e.to_string(),
            },
        )
    };
    if std::fs::metadata(&path).map_err(io_err)?.is_dir() {
        return Err(io_err(std::io::Error::other("it is a directory")));
    }
    // Read through `take` so a device or pipe named by mistake cannot make us
    // read forever.
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io_err(std::io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes; not a configuration file"
        ))));
    }
    let dir = Arc::new(
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base.to_path_buf()),
    );
    words_of_file(&bytes, Arc::new(path), dir.clone(), depth, out)?;
    Ok(dir)
}

/// Lexes one file's bytes into `out`, expanding nested `@file` words
/// relative to the file's directory.
pub fn words_of_file(
    bytes: &[u8],
    name: Arc<PathBuf>,
    dir: Arc<PathBuf>,
    depth: usize,
    out: &mut Vec<Word>,
) -> Result<(), ConfError> {
    let loc = |line| Location::file(name.clone(), line);
    let text =
        lexer::decode(bytes).map_err(|line| ConfError::new(loc(line), ErrorKind::InvalidUtf8))?;
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with("<?xml") || head.starts_with("<colinux") {
        return Err(ConfError::new(
            loc(1),
            ErrorKind::XmlObsolete {
                path: name.display().to_string(),
            },
        ));
    }
    let words = lexer::lex(text).map_err(|(line, k)| ConfError::new(loc(line), k))?;
    for w in words {
        let location = loc(w.line);
        if let Some(path) = w.text.strip_prefix('@') {
            include(path, &dir, &location, depth + 1, out)?;
            continue;
        }
        out.push(Word {
            text: w.text,
            location,
            base_dir: dir.clone(),
        });
    }
    Ok(())
}
