//! The classic colinux.conf / colinux-daemon command-line parser and its typed model.
//!
//! coLinux 0.7/0.8 took its settings as `key=value` words, on the daemon's
//! command line or in files named by `@file` (expanded where they stand).
//! This crate reads both into a [`Config`]:
//!
//! - [`parse_args`] — the daemon's trailing words, `@file`s included;
//! - [`parse_file`] — one file;
//! - [`parse_str`] / [`parse_bytes`] — text from memory (tests, the harness);
//! - [`Config::to_conf_text`] — the model back as classic text;
//! - [`Config::validate`] — checks a model built by hand;
//! - [`Config::to_json_pretty`] — the `--dump-config` JSON;
//! - [`ConfPath::resolve`] — where to open a path (relative paths are
//!   relative to the directory of the file that named them);
//! - [`Config::guest_mem_mib`], [`Config::initrd_share`],
//!   [`NetDeviceConf::effective_mac`] — the classic defaults the daemon applies.
//!
//! Errors ([`ConfError`]) name the file (or the command line), the line (or
//! word position), the key and value at fault, and what was expected.
//! Nothing here panics on any input.

#![forbid(unsafe_code)]

mod emit;
pub mod error;
mod interpret;
pub mod keys;
pub mod lexer;
pub mod model;
pub mod net;
pub mod policy;
pub mod source;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfError, ErrorKind, Location, Source};
pub use interpret::MAX_KERNEL_CMDLINE;
pub use model::{
    BlockDeviceConf, CobdMode, CofsShare, ConfPath, Config, ConsoleColors, ConsoleGeometry,
    ExecProgram, SerialPortConf,
};
pub use net::{MacAddr, NetDeviceConf, NetKind, Protocol, Redirection};
pub use policy::{guest_mem_mib, MemError};

/// The kernel file used when no `kernel=` is given (classic default).
pub const DEFAULT_KERNEL: &str = "vmlinux";

/// Parses the daemon's configuration words (after its own options): plain
/// `key=value` words and `@file` words, mixed, in order. Relative paths in
/// command-line words are relative to `cwd`; in files, to the file's directory.
pub fn parse_args<I, S>(args: I, cwd: &Path) -> Result<Config, ConfError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (words, first_dir) = source::expand_args(args, cwd)?;
    interpret::build(
        words,
        first_dir.or_else(|| Some(Arc::new(cwd.to_path_buf()))),
    )
}

/// Parses one configuration file (as `colinux-daemon @path` would).
pub fn parse_file(path: &Path) -> Result<Config, ConfError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let Some(text) = path.to_str() else {
        return Err(ConfError::new(
            Location::command_line(1),
            ErrorKind::InvalidUtf8,
        ));
    };
    let mut words = Vec::new();
    let dir = source::include_path(text, &cwd, &Location::command_line(1), 0, &mut words)?;
    interpret::build(words, Some(dir))
}

/// Parses configuration text held in memory. `name` is used in error
/// messages (e.g. the file it would live in); relative paths and nested
/// `@file`s are relative to `base_dir`.
pub fn parse_str(text: &str, name: &Path, base_dir: &Path) -> Result<Config, ConfError> {
    parse_bytes(text.as_bytes(), name, base_dir)
}

/// Like [`parse_str`] for raw bytes: invalid UTF-8 is an error naming its line.
pub fn parse_bytes(bytes: &[u8], name: &Path, base_dir: &Path) -> Result<Config, ConfError> {
    let dir = Arc::new(base_dir.to_path_buf());
    let mut words = Vec::new();
    source::words_of_file(
        bytes,
        Arc::new(name.to_path_buf()),
        dir.clone(),
        0,
        &mut words,
    )?;
    interpret::build(words, Some(dir))
}
