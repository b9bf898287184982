//! No silent option: configuration words the daemon accepts but does not
//! honour on this host, each with the reason, warned about once at start and
//! listed by `--check`; and the host checks of `ttysN=` / `execN=` values,
//! which name the file and line of the word at fault.

use std::ffi::OsString;
use std::path::Path;

use colinux_conf::keys::{self, Family, Key};
use colinux_conf::{CobdMode, Config, Location};
use colinux_devices::legacy::vga;

use crate::vmm::screen;

/// One accepted-but-ignored setting: the word (as it would be written) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhonoured {
    /// The key as written, e.g. `cofs0`.
    pub key: String,
    /// The value (for the message), e.g. `/home/me`.
    pub value: String,
    /// Why it is ignored.
    pub why: &'static str,
}

impl std::fmt::Display for Unhonoured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}: {}; ignored", self.key, self.value, self.why)
    }
}

/// Every setting in `config` the daemon accepts but does not honour (or
/// honours only in part).
pub fn list(config: &Config) -> Vec<Unhonoured> {
    let mut out = Vec::new();
    let mut add = |key: String, value: String, why| out.push(Unhonoured { key, value, why });
    if config.setcobd == CobdMode::Async {
        add(
            "setcobd".into(),
            "async".into(),
            "block requests are always completed in order (sync)",
        );
    }
    for s in &config.serial {
        if let Some(p) = &s.options {
            add(
                format!("ttys{}", s.index),
                format!("{},\"{p}\"", s.device),
                "line parameters are not applied (the guest sets the line through its UART)",
            );
        }
    }
    out.extend(screen_problems(config));
    out
}

/// Screen words the daemon takes only in part (see [`crate::vmm::screen`]),
/// each with why.
fn screen_problems(config: &Config) -> Vec<Unhonoured> {
    let mut out = Vec::new();
    if let Some(raw) = &config.console {
        let g = config.console_geometry();
        let size = screen::text_size(config);
        if (size.cols, size.rows) != (g.cols as u16, g.rows as u16) {
            out.push(Unhonoured {
                key: "cocon".into(),
                value: raw.clone(),
                why: TOO_BIG,
            });
        } else if raw.matches('x').count() == 2 {
            out.push(Unhonoured {
                key: "cocon".into(),
                value: raw.clone(),
                why: "the scroll-back part is not kept: the kernel's VGA console has none \
                      (colinux-console's terminal keeps its own)",
            });
        }
    }
    if let Some(c) = &config.color {
        if screen::color_index(&c.background).is_some_and(|bg| bg > 7) {
            out.push(Unhonoured {
                key: "color".into(),
                value: format!("{},{}", c.foreground, c.background),
                why: "a VGA text screen has only the 8 dark backgrounds (bit 7 is blink); \
                      the background's dark twin is used",
            });
        }
    }
    out
}

const TOO_BIG: &str = "larger than a VGA text screen (at most 255 columns, 255 rows and \
                       16384 cells); the screen is 80x25";

// The limits TOO_BIG names.
const _: () = assert!(vga::MAX_COLS == 255 && vga::MAX_ROWS == 255 && vga::MAX_CELLS == 16384);

/// Where the word defining `family` index `index` stands (the last one).
fn locate(words: &[OsString], cwd: &Path, family: Family, index: u32) -> Option<Location> {
    let (words, _) = colinux_conf::source::expand_args(words, cwd).ok()?;
    words
        .into_iter()
        .filter(|w| {
            colinux_conf::lexer::split_key_value(&w.text).is_some_and(|(k, _)| {
                matches!(keys::classify(&k), Key::Indexed(f, n)
                    if f == family && keys::parse_index(f, &n) == Some(index))
            })
        })
        .last()
        .map(|w| w.location)
}

/// Checks the `ttysN=`, `execN=` and `cofsN=` values against this host
/// (Windows port names, missing or non-executable programs, share
/// directories that are missing, not directories or not readable). Each
/// message names the file and line (or command-line word) of the word, the
/// word and the problem.
pub fn host_errors(config: &Config, words: &[OsString], cwd: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut report = |family, index, word: String, problem: String| {
        let at = locate(words, cwd, family, index)
            .map(|l| format!("{l}: "))
            .unwrap_or_default();
        out.push(format!("{at}`{word}`: {problem}"));
    };
    for s in &config.serial {
        if let Err(e) = crate::vmm::ttys::parse_target(s.index, &s.device) {
            report(
                Family::Ttys,
                s.index,
                format!("ttys{}={}", s.index, s.device),
                e,
            );
        }
    }
    for e in &config.exec {
        if let Err(problem) = crate::vmm::exec::check(e) {
            let word = match &e.arguments {
                Some(a) => format!("exec{}={},\"{a}\"", e.index, e.program.raw),
                None => format!("exec{}={}", e.index, e.program.raw),
            };
            report(Family::Exec, e.index, word, problem);
        }
    }
    for s in &config.cofs {
        if let Err(problem) = check_share_dir(&s.path.resolve()) {
            let ro = if s.read_only { ",ro" } else { "" };
            report(
                Family::Cofs,
                s.index,
                format!("cofs{}={}{ro}", s.index, s.path.raw),
                problem,
            );
        }
    }
    out
}

/// Whether `dir` can be shared: an existing directory the daemon may list.
fn check_share_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("the directory {shown} does not exist"))
        }
        Err(e) => return Err(format!("{shown}: {e}")),
        Ok(m) if !m.is_dir() => return Err(format!("{shown} is not a directory")),
        Ok(_) => {}
    }
    std::fs::read_dir(dir)
        .and_then(|mut entries| entries.next().transpose())
        .map(|_| ())
        .map_err(|e| format!("cannot read the directory {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Config {
        colinux_conf::parse_str(text, Path::new("t.conf"), Path::new("/")).unwrap()
    }

    fn keys_of(c: &Config) -> Vec<String> {
        list(c).into_iter().map(|u| u.key).collect()
    }

    #[test]
    fn lists_exactly_the_ignored_words() {
        let c = conf(
            "kernel=vmlinux cobd0=root.fs eth0=slirp mem=256 ttys0=pty exec0=/bin/true \
             cofs0=/home cofs3=/tmp setcobd=async cocon=100x40 cursor=50 color=white,blue \
             ttys1=/dev/ttyUSB0,\"BAUD=9600\" root=/dev/cobd0",
        );
        // The screen words are honoured (see vmm::screen).
        assert_eq!(keys_of(&c), vec!["setcobd", "ttys1"]);
        let msgs: Vec<String> = list(&c).iter().map(ToString::to_string).collect();
        assert!(msgs[0].starts_with("setcobd=async: "), "{msgs:?}");
        assert!(msgs[1].starts_with("ttys1=/dev/ttyUSB0,\"BAUD=9600\": line parameters"));
        // ... except a screen larger than VGA text mode has, or a bright background.
        let c = conf("kernel=vmlinux cocon=300x100 color=white,lightblue");
        let msgs: Vec<String> = list(&c).iter().map(ToString::to_string).collect();
        assert_eq!(keys_of(&c), vec!["cocon", "color"], "{msgs:?}");
        assert!(msgs[0].starts_with("cocon=300x100: larger than a VGA text screen"));
        assert!(msgs[1].contains("dark twin"), "{msgs:?}");
        let scroll = conf("kernel=vmlinux cocon=80x25x1000");
        assert!(list(&scroll)[0].why.contains("scroll-back"));
    }

    #[test]
    fn a_plain_config_has_nothing_ignored() {
        let c = conf(
            "kernel=vmlinux cobd0=root.fs eth0=slirp setcobd=sync ttys0=pty cofs0=/srv cofs1=/x,ro cocon=100x30 cursor=20 color=black,lightgray ro",
        );
        assert!(list(&c).is_empty(), "{:?}", list(&c));
    }

    #[test]
    fn host_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("colinux-unh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.conf");
        std::fs::write(
            &file,
            "kernel=vmlinux\nttys0=COM1\nttys1=pty\nexec0=/nonexistent/helper,\"-v\"\nexec1=/bin/sh\n",
        )
        .unwrap();
        let words = vec![OsString::from(format!("@{}", file.display()))];
        let c = colinux_conf::parse_args(&words, &dir).unwrap();
        let errs = host_errors(&c, &words, &dir);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("x.conf:2: `ttys0=COM1`: `COM1` is a Windows port name"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("x.conf:4: `exec0=/nonexistent/helper,\"-v\"`: `/nonexistent/helper`"),
            "{errs:?}"
        );
        // Command-line words are located by position.
        let words = [OsString::from("ro"), OsString::from("ttys2=com3:")];
        let c = colinux_conf::parse_args(&words, Path::new("/")).unwrap();
        let errs = host_errors(&c, &words, Path::new("/"));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("command line, word 2: `ttys2=com3:`"),
            "{errs:?}"
        );
    }
}
