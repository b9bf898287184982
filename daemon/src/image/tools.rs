//! Finding and running the e2fsprogs tools (`e2fsck`, `resize2fs`, `mke2fs`),
//! which often live in `/sbin` outside an ordinary user's `PATH`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use super::ImageError;

/// Directories searched after `PATH`.
const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"];

/// The full path of `program`, from `PATH` or the sbin directories.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// What a finished program reported.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// stdout and stderr together.
    pub text: String,
}

/// Runs `program args...` and collects its exit code and output.
pub fn run<I, S>(program: &str, args: I) -> Result<Output, ImageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = find(program).ok_or_else(|| ImageError::Tool {
        program: program.to_string(),
        why: "not found in PATH or /sbin (install e2fsprogs)".to_string(),
    })?;
    tracing::debug!("running {}", exe.display());
    let out = Command::new(&exe)
        .args(args)
        .output()
        .map_err(|e| ImageError::Tool {
            program: program.to_string(),
            why: format!("cannot start {}: {e}", exe.display()),
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Output {
        code: out.status.code(),
        text,
    })
}
