//! What `bootstrap` is asked for and what it reports: the packages, the
//! defaults, the options and the checks made on them before the build.

use std::path::PathBuf;
use std::time::Duration;

use super::super::ImageError;
#[cfg(doc)] // the link in `BootstrapOptions::mirror`'s doc
use super::host_mirror;

/// Packages installed on top of Debian's `minbase` variant whatever the
/// init: device names (udev), networking with DHCP (ifupdown,
/// isc-dhcp-client, iproute2, netbase), remote login (openssh-server) and
/// the basic tools a coLinux image had. [`Init::packages`] adds the init.
pub const PACKAGES: &[&str] = &[
    "udev",
    "ifupdown",
    "isc-dhcp-client",
    "openssh-server",
    "netbase",
    "iproute2",
    "kmod",
    "e2fsprogs",
    "procps",
    "iputils-ping",
    "less",
];

/// The init system the image boots with (`--init`). (No doc comments on
/// the variants: clap would switch `--help` to its long layout.)
///
/// `Systemd` is Debian's default: `systemd-sysv` and `dbus`, a serial getty
/// on ttyS0. `Sysvinit` is what classic coLinux images ran: `sysvinit-core`
/// (with `orphan-sysvinit-scripts`, the init scripts Debian packages no
/// longer ship), Debian's own `/etc/inittab` as shipped: gettys on tty1 to
/// tty6, the serial `T0` line commented out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[allow(missing_docs)]
pub enum Init {
    #[default]
    Systemd,
    Sysvinit,
}

impl Init {
    /// The packages that make this init PID 1 (installed beside [`PACKAGES`]).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Init::Systemd => &["systemd-sysv", "dbus"],
            Init::Sysvinit => &["sysvinit-core", "orphan-sysvinit-scripts"],
        }
    }

    /// Its name as `--init` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Init::Systemd => "systemd",
            Init::Sysvinit => "sysvinit",
        }
    }

    /// Every package `mmdebstrap --include` gets for an image with this init.
    pub fn all_packages(self) -> Vec<&'static str> {
        let mut all = self.packages().to_vec();
        all.extend(PACKAGES);
        all
    }
}

/// The mirror used when this host's apt sources name no Debian mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian release installed by default (Debian 12).
pub const DEFAULT_SUITE: &str = "bookworm";
/// The guest's host name by default.
pub const DEFAULT_HOSTNAME: &str = "colinux";
/// The ext4 volume label by default.
pub const DEFAULT_LABEL: &str = "colinux-root";

/// A swap file to make beside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSpec {
    /// The swap file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Everything `bootstrap` needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// The image file to make.
    pub image: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// A swap file too (and its line in fstab).
    pub swap: Option<SwapSpec>,
    /// A `.tar.gz` of `lib/modules/<release>/...` to install.
    pub modules: Option<PathBuf>,
    /// Public key files for `/root/.ssh/authorized_keys`.
    pub authorized_keys: Vec<PathBuf>,
    /// Root's password; `None` leaves it empty (console login without one).
    pub root_password: Option<String>,
    /// The guest's host name.
    pub hostname: String,
    /// The Debian mirror; `None` takes this host's (see [`host_mirror`]).
    pub mirror: Option<String>,
    /// The Debian release.
    pub suite: String,
    /// The ext4 volume label.
    pub label: String,
    /// Replace existing image and swap files.
    pub force: bool,
    /// The init system (PID 1).
    pub init: Init,
}

impl BootstrapOptions {
    /// Options with the defaults for an image of `size` bytes at `image`.
    pub fn new(image: impl Into<PathBuf>, size: u64) -> Self {
        BootstrapOptions {
            image: image.into(),
            size,
            swap: None,
            modules: None,
            authorized_keys: Vec::new(),
            root_password: None,
            hostname: DEFAULT_HOSTNAME.to_string(),
            mirror: None,
            suite: DEFAULT_SUITE.to_string(),
            label: DEFAULT_LABEL.to_string(),
            force: false,
            init: Init::default(),
        }
    }
}

/// What a finished bootstrap made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The image's size in bytes.
    pub image_size: u64,
    /// Bytes its file system uses.
    pub used_bytes: u64,
    /// The mirror the packages came from.
    pub mirror: String,
    /// The kernel releases whose modules were installed.
    pub module_releases: Vec<String>,
    /// The swap file's UUID, if one was made.
    pub swap_uuid: Option<String>,
    /// How long the whole build took.
    pub elapsed: Duration,
}

/// Checks a host name: one label of letters, digits and `-` (1 to 63
/// characters, not starting or ending with `-`).
pub fn check_hostname(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if name.is_empty() || name.len() > 63 || !ok_chars {
        return Err("use 1 to 63 letters, digits or `-` (one label, no dots)".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it must not start or end with `-`".into());
    }
    Ok(())
}

/// An [`ImageError::BadArgument`].
pub(super) fn bad_arg(what: &str, value: &str, why: &str) -> ImageError {
    ImageError::BadArgument {
        what: what.into(),
        value: value.into(),
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(check_hostname("colinux").is_ok());
        assert!(check_hostname("web-1").is_ok());
        for bad in ["", "-a", "a-", "a.b", "a b", &"x".repeat(64)] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_init_brings_its_own_pid_1_and_the_common_packages() {
        assert_eq!(BootstrapOptions::new("x.img", 1 << 30).init, Init::Systemd);
        let systemd = Init::Systemd.all_packages();
        let sysv = Init::Sysvinit.all_packages();
        for p in PACKAGES {
            assert!(systemd.contains(p) && sysv.contains(p), "{p}");
        }
        assert!(systemd.contains(&"systemd-sysv") && !systemd.contains(&"sysvinit-core"));
        // sysvinit-core conflicts with systemd-sysv; nothing but udev's and
        // ssh's own scripts is needed without systemd (no dbus).
        assert!(sysv.contains(&"sysvinit-core") && sysv.contains(&"orphan-sysvinit-scripts"));
        for p in ["systemd-sysv", "systemd", "dbus"] {
            assert!(!sysv.contains(&p), "{p}");
        }
        let mut dedup = sysv.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), sysv.len());
        assert_eq!(Init::Sysvinit.name(), "sysvinit");
        assert_eq!(Init::Systemd.name(), "systemd");
    }
}
