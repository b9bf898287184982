//! Recognising configuration keys (`kernel`, `cobd3`, `hda1`, `eth0`, ...)
//! and checking the small scalar values (`mem`, `cursor`, `color`; `cocon` is
//! [`ConsoleGeometry::parse`](crate::model::ConsoleGeometry::parse)).

use crate::model::{MAX_COBD, MAX_COFS, MAX_ETH, MAX_EXEC, MAX_TTYS};

/// A key with a single value; a later occurrence replaces an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlainKey {
    /// `kernel=`
    Kernel,
    /// `initrd=`
    Initrd,
    /// `mem=`
    Mem,
    /// `setcobd=`
    Setcobd,
    /// `cocon=`
    Cocon,
    /// `cursor=`
    Cursor,
    /// `color=`
    Color,
}

/// An indexed key family; each index may be defined once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `cobdN=`
    Cobd,
    /// `cofsN=`
    Cofs,
    /// `ethN=`
    Eth,
    /// `ttysN=`
    Ttys,
    /// `execN=`
    Exec,
}

impl Family {
    /// The key prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Cobd => "cobd",
            Family::Cofs => "cofs",
            Family::Eth => "eth",
            Family::Ttys => "ttys",
            Family::Exec => "exec",
        }
    }

    /// The largest index allowed.
    pub fn max(self) -> u32 {
        match self {
            Family::Cobd => MAX_COBD,
            Family::Cofs => MAX_COFS,
            Family::Eth => MAX_ETH,
            Family::Ttys => MAX_TTYS,
            Family::Exec => MAX_EXEC,
        }
    }

    const ALL: [Family; 5] = [
        Family::Cobd,
        Family::Cofs,
        Family::Eth,
        Family::Ttys,
        Family::Exec,
    ];
}

/// What a `key=` word is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A single-valued key.
    Plain(PlainKey),
    /// An indexed key; the index text is validated separately.
    Indexed(Family, String),
    /// The family prefix with no index (`cobd=`): an error.
    MissingIndex(Family),
    /// An `hdXN` / `sdXN` alias name.
    Alias(String),
    /// A late-coLinux key we do not implement (`scsiN`, `pciN`, `videoN`).
    Unsupported(&'static str),
    /// Not a configuration key: the word goes to the kernel command line.
    Kernel,
}

fn is_alias(key: &str) -> bool {
    let b = key.as_bytes();
    if b.len() < 3 || !(key.starts_with("hd") || key.starts_with("sd")) {
        return false;
    }
    if !b[2].is_ascii_lowercase() {
        return false;
    }
    let part = &key[3..];
    part.is_empty()
        || (part.len() <= 2
            && part.bytes().all(|c| c.is_ascii_digit())
            && !part.starts_with('0')
            && part.parse::<u32>().is_ok_and(|n| (1..=63).contains(&n)))
}

/// Classifies the key part of a `key=value` word (keys are case-sensitive).
pub fn classify(key: &str) -> Key {
    match key {
        "kernel" => return Key::Plain(PlainKey::Kernel),
        "initrd" => return Key::Plain(PlainKey::Initrd),
        "mem" => return Key::Plain(PlainKey::Mem),
        "setcobd" => return Key::Plain(PlainKey::Setcobd),
        "cocon" => return Key::Plain(PlainKey::Cocon),
        "cursor" => return Key::Plain(PlainKey::Cursor),
        "color" => return Key::Plain(PlainKey::Color),
        _ => {}
    }
    for fam in Family::ALL {
        if let Some(rest) = key.strip_prefix(fam.prefix()) {
            if rest.is_empty() {
                return Key::MissingIndex(fam);
            }
            if rest.bytes().all(|b| b.is_ascii_digit()) {
                return Key::Indexed(fam, rest.to_string());
            }
        }
    }
    for (prefix, name) in [("scsi", "scsi"), ("pci", "pci"), ("video", "video")] {
        if let Some(rest) = key.strip_prefix(prefix) {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return Key::Unsupported(name);
            }
        }
    }
    if is_alias(key) {
        return Key::Alias(key.to_string());
    }
    Key::Kernel
}

/// Parses a decimal index and checks it against the family's maximum.
pub fn parse_index(fam: Family, text: &str) -> Option<u32> {
    text.parse::<u32>().ok().filter(|&n| n <= fam.max())
}

/// Largest `mem=` accepted (MiB): 1 TiB; the daemon applies the host rule.
pub const MAX_MEM_MIB: u64 = 1 << 20;

/// Parses `mem=N` (MiB, 1..=1 TiB).
pub fn parse_mem(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>()
        .ok()
        .filter(|&n| (1..=MAX_MEM_MIB).contains(&n))
}

/// Parses `cursor=0..100` (percent of the character cell).
pub fn parse_cursor(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|&n| n <= 100)
}

/// The 16 VGA colour names accepted by `color=FG,BG`.
pub const VGA_COLORS: [&str; 16] = [
    "black",
    "blue",
    "green",
    "cyan",
    "red",
    "magenta",
    "brown",
    "lightgray",
    "darkgray",
    "lightblue",
    "lightgreen",
    "lightcyan",
    "lightred",
    "lightmagenta",
    "yellow",
    "white",
];

/// Checks one colour name (case-insensitive) and returns it in lower case.
pub fn parse_color(v: &str) -> Option<String> {
    let lower = v.to_ascii_lowercase();
    VGA_COLORS.contains(&lower.as_str()).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_keys() {
        assert_eq!(classify("kernel"), Key::Plain(PlainKey::Kernel));
        assert_eq!(classify("cobd12"), Key::Indexed(Family::Cobd, "12".into()));
        assert_eq!(classify("eth"), Key::MissingIndex(Family::Eth));
        assert_eq!(classify("hda1"), Key::Alias("hda1".into()));
        assert_eq!(classify("sdb"), Key::Alias("sdb".into()));
        assert_eq!(classify("hda0"), Key::Kernel);
        assert_eq!(classify("Kernel"), Key::Kernel);
        assert_eq!(classify("root"), Key::Kernel);
        assert_eq!(classify("ether"), Key::Kernel);
        assert_eq!(classify("scsi0"), Key::Unsupported("scsi"));
        assert_eq!(classify("video"), Key::Kernel);
    }

    #[test]
    fn scalars() {
        assert_eq!(parse_mem("256"), Some(256));
        assert_eq!(parse_mem("0"), None);
        assert_eq!(parse_mem("-1"), None);
        assert_eq!(parse_cursor("101"), None);
        assert_eq!(parse_color("LightGray").as_deref(), Some("lightgray"));
        assert_eq!(parse_index(Family::Exec, "8"), None);
        assert_eq!(parse_index(Family::Exec, "07"), Some(7));
        assert_eq!(parse_index(Family::Cobd, "31"), Some(31));
    }
}
