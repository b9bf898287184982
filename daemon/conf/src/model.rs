//! The typed configuration model: what `colinux.conf` and the command line
//! describe, ready for the daemon (and the harness) to use. Serialized with
//! serde; the JSON field names are an interface (see the crate docs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::net::NetDeviceConf;

/// Highest `cobdN` / `cofsN` / `ttysN` index (0..=31).
pub const MAX_COBD: u32 = 31;
/// Highest `cofsN` index.
pub const MAX_COFS: u32 = 31;
/// Highest `ethN` index (0..=15).
pub const MAX_ETH: u32 = 15;
/// Highest `ttysN` index.
pub const MAX_TTYS: u32 = 31;
/// Highest `execN` index (0..=7).
pub const MAX_EXEC: u32 = 7;

/// A host path exactly as the user wrote it, plus the directory it is
/// relative to (the directory of the file it came from, or the working
/// directory for command-line words). Serializes as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfPath {
    /// The path as written (quotes removed, backslashes kept).
    pub raw: String,
    /// Directory that a relative `raw` is relative to; `None` when the model
    /// was built by hand or deserialized (then the working directory applies).
    pub base_dir: Option<Arc<PathBuf>>,
}

impl ConfPath {
    /// A path relative to `base_dir` (or absolute).
    pub fn new(raw: impl Into<String>, base_dir: Option<Arc<PathBuf>>) -> Self {
        Self {
            raw: raw.into(),
            base_dir,
        }
    }

    /// The path to open: `raw` itself when absolute, otherwise joined onto the
    /// directory of the file that named it (or left relative to the current
    /// directory when there is none).
    pub fn resolve(&self) -> PathBuf {
        let p = Path::new(&self.raw);
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }
}

impl Serialize for ConfPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for ConfPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ConfPath::new(String::deserialize(d)?, None))
    }
}

/// How block requests complete (`setcobd=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CobdMode {
    /// Requests complete before the guest continues (classic default).
    #[default]
    Sync,
    /// Requests complete in the background and interrupt the guest.
    Async,
}

/// A `cobdN` block device and the alias names (`hda1`, `sdb`) it also has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDeviceConf {
    /// N in `cobdN` (0..=31).
    pub index: u32,
    /// The host file or device backing it.
    pub path: ConfPath,
    /// Extra guest names (`hda1`, `sdb2`), in the order given.
    pub aliases: Vec<String>,
}

/// A `cofsN` host directory share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CofsShare {
    /// N in `cofsN` (0..=31).
    pub index: u32,
    /// The shared host directory.
    pub path: ConfPath,
    /// `cofsN=DIR,ro`: the guest may read the share but change nothing.
    #[serde(default)]
    pub read_only: bool,
}

/// A `ttysN` host serial port given to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialPortConf {
    /// N in `ttysN` (0..=31).
    pub index: u32,
    /// The host port (`COM1`, `/dev/ttyS0`) as written.
    pub device: String,
    /// Line parameters (`"BAUD=115200 PARITY=n"`), unquoted, if given.
    pub options: Option<String>,
}

/// An `execN` program started with the VM and stopped when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProgram {
    /// N in `execN` (0..=7).
    pub index: u32,
    /// The program to run.
    pub program: ConfPath,
    /// Its arguments as one string (unquoted), if given.
    pub arguments: Option<String>,
}

/// The console's foreground and background colours (`color=FG,BG`), as VGA
/// colour names in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleColors {
    /// Text colour.
    pub foreground: String,
    /// Background colour.
    pub background: String,
}

/// The console geometry from `cocon=COLSxROWS[xSCROLL]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleGeometry {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Scroll-back lines (500 when not given).
    pub scroll: u32,
}

impl ConsoleGeometry {
    /// Parses `cocon=COLSxROWS[xSCROLL]` (columns and rows 1..=1000, scroll-back
    /// 0..=100000).
    pub fn parse(v: &str) -> Option<ConsoleGeometry> {
        let parts: Vec<&str> = v.split('x').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let num = |s: &str, lo: u32, hi: u32| -> Option<u32> {
            if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n))
        };
        Some(ConsoleGeometry {
            cols: num(parts[0], 1, 1000)?,
            rows: num(parts[1], 1, 1000)?,
            scroll: match parts.get(2) {
                Some(s) => num(s, 0, 100_000)?,
                None => 500,
            },
        })
    }
}

impl Default for ConsoleGeometry {
    fn default() -> Self {
        Self {
            cols: 80,
            rows: 25,
            scroll: 500,
        }
    }
}

/// A whole coLinux VM configuration.
///
/// JSON layout (field order is part of the interface): `kernel`, `initrd`,
/// `mem_mib`, `block_devices`, `cofs`, `network`, `serial`, `exec`, `console`,
/// `kernel_cmdline`, then `setcobd`, `cursor`, `color`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// `kernel=` the guest kernel (`vmlinux` when not given).
    pub kernel: ConfPath,
    /// `initrd=` an initial ramdisk.
    pub initrd: Option<ConfPath>,
    /// `mem=` guest RAM in MiB; `None` means the daemon's default rule.
    pub mem_mib: Option<u64>,
    /// `cobdN=` block devices with their aliases, sorted by index.
    pub block_devices: Vec<BlockDeviceConf>,
    /// `cofsN=` directory shares, sorted by index.
    pub cofs: Vec<CofsShare>,
    /// `ethN=` network interfaces, sorted by index.
    pub network: Vec<NetDeviceConf>,
    /// `ttysN=` serial ports, sorted by index.
    pub serial: Vec<SerialPortConf>,
    /// `execN=` helper programs, sorted by index.
    pub exec: Vec<ExecProgram>,
    /// `cocon=` as written (validated), e.g. `"100x40x1000"`.
    pub console: Option<String>,
    /// Every other word, in order, joined by single spaces.
    pub kernel_cmdline: String,
    /// `setcobd=` block completion mode.
    #[serde(default)]
    pub setcobd: CobdMode,
    /// `cursor=` cursor size in percent (0..=100).
    #[serde(default)]
    pub cursor: Option<u8>,
    /// `color=FG,BG` console colours.
    #[serde(default)]
    pub color: Option<ConsoleColors>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kernel: ConfPath::new(crate::DEFAULT_KERNEL, None),
            initrd: None,
            mem_mib: None,
            block_devices: Vec::new(),
            cofs: Vec::new(),
            network: Vec::new(),
            serial: Vec::new(),
            exec: Vec::new(),
            console: None,
            kernel_cmdline: String::new(),
            setcobd: CobdMode::Sync,
            cursor: None,
            color: None,
        }
    }
}

impl Config {
    /// The block device with cobd index `index`, if configured.
    pub fn block_device(&self, index: u32) -> Option<&BlockDeviceConf> {
        self.block_devices.iter().find(|d| d.index == index)
    }

    /// The console geometry: `cocon=` parsed, or the classic 80x25x500.
    pub fn console_geometry(&self) -> ConsoleGeometry {
        self.console
            .as_deref()
            .and_then(ConsoleGeometry::parse)
            .unwrap_or_default()
    }

    /// Serializes the model as pretty JSON (the `--dump-config` format).
    pub fn to_json_pretty(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::ConsoleGeometry;

    #[test]
    fn cocon() {
        assert_eq!(
            ConsoleGeometry::parse("100x40"),
            Some(ConsoleGeometry {
                cols: 100,
                rows: 40,
                scroll: 500
            })
        );
        assert_eq!(
            ConsoleGeometry::parse("100x40x0").map(|g| g.scroll),
            Some(0)
        );
        assert_eq!(ConsoleGeometry::parse("100"), None);
    }
}
