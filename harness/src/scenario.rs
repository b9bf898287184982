//! Scenarios as data: harness/scenarios/NAME.toml (see vm-images/README.md).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (must match the file name).
    pub name: String,
    /// One line on what it proves.
    #[serde(default)]
    pub description: String,
    /// Daemon capabilities monitor colinux needs for this scenario.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Guest configuration in colinux.conf form; `${sha256:FILE}` and
    /// `${size:FILE}` expand to the SHA-256 / byte size of a generated work file.
    pub conf: String,
    /// Assertions (COLINUX-CHECK lines) that must be reported PASS.
    #[serde(default)]
    pub expect: Vec<String>,
    /// How many times the inner monitor boots the guest (same work files).
    #[serde(default = "one")]
    pub boots: u32,
    /// Deadline for the whole host-VM run, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Deadline for one inner boot, enforced inside the host VM, seconds.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout_secs: u64,
    /// Log directory name when one scenario runs several times side by side
    /// (a benchmark's rounds); None = `name`. Never read from the file.
    #[serde(skip)]
    pub log_name: Option<String>,
    /// Host VM RAM in MiB.
    #[serde(default = "default_host_mem")]
    pub host_mem_mib: u32,
    /// The scenario needs vm-images/host/scenarios/NAME.sh (fail if missing).
    #[serde(default)]
    pub host_script: bool,
    /// The monitors the scenario is for (default both). A scenario of the
    /// daemon's own features (its console server, say) names only
    /// `colinux`: the qemu reference leaves it out by design, not as
    /// "unsupported".
    #[serde(default = "both_monitors")]
    pub monitors: Vec<String>,
    /// More guest configurations for host scripts that boot other guests
    /// themselves (a benchmark's second guest), by name: each is written as
    /// `/work/NAME.conf` (for colinux-daemon) and `/work/NAME.qemu.args` (the
    /// inner QEMU's argv, a word a line), expanded like `conf`.
    #[serde(default)]
    pub extra_confs: std::collections::BTreeMap<String, String>,
    /// The inner monitor's console input is a FIFO host scripts write to
    /// (`/tmp/console-in` in the host VM; `CONSOLE_IN=1`), not /dev/null:
    /// for scenarios that type at a getty.
    #[serde(default)]
    pub console_input: bool,
    /// Compare the guest's COLINUX-INV inventory with this insta snapshot.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Files created in the work directory (/work in the host VM) before the run.
    #[serde(default)]
    pub files: Vec<WorkFile>,
    /// Checks done by the harness on the work files after the run.
    #[serde(default)]
    pub post: Vec<PostCheck>,
    /// Run with no other scenario beside it: its host VM gets the whole
    /// machine. For a guest whose own timeouts (systemd's 90 s device wait)
    /// run out when two TCG host VMs share two cores.
    #[serde(default)]
    pub alone: bool,
}

fn both_monitors() -> Vec<String> {
    vec!["colinux".into(), "qemu".into()]
}

impl Scenario {
    /// Whether the scenario runs under the monitor named `monitor`.
    pub fn is_for(&self, monitor: &str) -> bool {
        self.monitors.iter().any(|m| m == monitor)
    }
}

fn one() -> u32 {
    1
}
fn default_timeout() -> u64 {
    300
}
fn default_boot_timeout() -> u64 {
    180
}
fn default_host_mem() -> u32 {
    1024
}

/// A file made for the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkFile {
    /// File name in /work.
    pub name: String,
    /// `random` (fresh random bytes), `zero` (sparse zeros), or `image` (a
    /// copy of a built image named by `image`, e.g. "rootfs").
    pub kind: String,
    /// Size in MiB (random, zero).
    #[serde(default)]
    pub size_mib: u64,
    /// Built image name for kind = "image".
    #[serde(default)]
    pub image: Option<String>,
    /// Made read-only (mode 0444): the cobd is then read-only for the guest.
    #[serde(default)]
    pub read_only: bool,
}

/// A harness-side check after the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PostCheck {
    /// The file is byte-identical to what the harness made.
    Unchanged {
        /// Work file name.
        file: String,
    },
    /// The file holds exactly the cobd-io write pattern (see checks.rs).
    Pattern {
        /// Work file name.
        file: String,
        /// Pattern seed.
        seed: u64,
        /// Number of 4 KiB blocks written.
        blocks: u64,
        /// Block stride.
        stride: u64,
    },
    /// `e2fsck -fn` finds the file system clean.
    E2fsck {
        /// Work file name.
        file: String,
    },
}

/// Load one scenario file.
pub fn load(path: &Path) -> Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let s: Scenario =
        toml::from_str(&text).with_context(|| format!("parsing scenario {}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if s.name != stem {
        bail!(
            "{}: name = {:?} differs from the file name",
            path.display(),
            s.name
        );
    }
    if let Some(m) = s
        .monitors
        .iter()
        .find(|m| !matches!(m.as_str(), "colinux" | "qemu"))
    {
        bail!(
            "{}: monitors = [..{m:?}..]: the monitors are \"colinux\" and \"qemu\"",
            path.display()
        );
    }
    Ok(s)
}

/// All scenarios in `dir`, sorted by name (file order is the name order).
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().map(|p| load(p)).collect()
}

/// Expand `${sha256:FILE}` / `${size:FILE}` using `lookup(kind, file)`.
pub fn expand(conf: &str, lookup: &dyn Fn(&str, &str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = conf;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .with_context(|| format!("unterminated ${{ in conf near {:?}", &rest[i..]))?;
        let var = &after[..end];
        let (kind, file) = var
            .split_once(':')
            .with_context(|| format!("conf variable ${{{var}}} must be KIND:FILE"))?;
        let v = lookup(kind, file)
            .with_context(|| format!("conf variable ${{{var}}}: unknown kind or file"))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_parses() {
        let all = load_all(&crate::paths::scenarios_dir()).unwrap();
        assert!(all.iter().any(|s| s.name == "boot"));
        for s in &all {
            assert!(!s.expect.is_empty(), "{} expects nothing", s.name);
            crate::conf::parse(&s.conf).unwrap();
        }
    }

    #[test]
    fn every_shipped_scenario_has_its_scripts() {
        let recipes = crate::paths::recipes_dir();
        for s in load_all(&crate::paths::scenarios_dir()).unwrap() {
            // The runner fails a scenario without its guest check (named by
            // colinux.check= on the kernel line, else the scenario's name).
            let check = s
                .conf
                .split_whitespace()
                .find_map(|w| w.strip_prefix("colinux.check="))
                .unwrap_or(&s.name);
            let guest = recipes.join(format!("guest/checks/{check}.sh"));
            assert!(guest.is_file(), "{}: {} missing", s.name, guest.display());
            let host = recipes.join(format!("host/scenarios/{}.sh", s.name));
            assert!(
                !s.host_script || host.is_file(),
                "{}: {} missing",
                s.name,
                host.display()
            );
        }
    }

    #[test]
    fn monitors_default_to_both_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("colinux-scn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, extra: &str| {
            let p = dir.join(format!("{name}.toml"));
            std::fs::write(
                &p,
                format!("name = \"{name}\"\nconf = \"kernel=/k\"\nexpect = [\"a\"]\n{extra}"),
            )
            .unwrap();
            p
        };
        let both = load(&write("both", "")).unwrap();
        assert!(both.is_for("qemu") && both.is_for("colinux"));
        let own = load(&write("own", "monitors = [\"colinux\"]\n")).unwrap();
        assert!(own.is_for("colinux") && !own.is_for("qemu"));
        let e = load(&write("bad", "monitors = [\"kvmtool\"]\n")).unwrap_err();
        assert!(format!("{e:#}").contains("\"kvmtool\""), "{e:#}");
        assert!(!both.alone, "a scenario shares the machine unless it says");
        assert!(load(&write("solo", "alone = true\n")).unwrap().alone);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expand_vars() {
        let r = expand("a=${sha256:x.img} b=${size:x.img}", &|k, f| {
            Some(format!("{k}-{f}"))
        })
        .unwrap();
        assert_eq!(r, "a=sha256-x.img b=size-x.img");
        assert!(expand("${nope}", &|_, _| None).is_err());
    }
}
