//! The parts of a colinux.conf the harness needs to derive an inner QEMU
//! command line, read with the project's parser (`colinux-conf`), so the
//! reference monitor and the daemon see the same configuration.

use std::path::Path;
use thiserror::Error;

/// A conf the harness cannot use (the message names file, line and value).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfError {
    /// Rejected by colinux-conf.
    #[error("{0}")]
    Invalid(String),
}

/// The parsed configuration: the project's own model, so the harness and the
/// daemon read the same words into the same types.
pub use colinux_conf::{CofsShare, Config as Conf, NetKind};

/// Parse conf text with the project's parser (`colinux-conf`). Relative paths
/// are taken as relative to /work; every list is sorted by index.
pub fn parse(text: &str) -> Result<Conf, ConfError> {
    colinux_conf::parse_str(text, Path::new("colinux.conf"), Path::new("/work"))
        .map_err(|e| ConfError::Invalid(e.to_string()))
}

/// A configured path as the host VM sees it (resolved against /work).
pub fn path_of(p: &colinux_conf::ConfPath) -> String {
    p.resolve().display().to_string()
}

/// The virtio-fs tag a cofs share is mounted by (`mount -t virtiofs cofsN DIR`).
pub fn cofs_tag(s: &CofsShare) -> String {
    format!("cofs{}", s.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keys_the_harness_needs() {
        let c = parse(
            "kernel=/images/vmlinuz initrd=/images/guest-initrd.img # comment\n\
             mem=128 cobd0=\"/work/a b.img\" hda1=:cobd0 cobd1=/work/c.img\n\
             eth0=slirp,00:ff:00:00:00:01,tcp:2222:22/udp:5000:5000:3\n\
             eth1=tuntap,\"tap0\" root=/dev/cobd0 console=ttyS0",
        )
        .unwrap();
        assert_eq!(path_of(&c.kernel), "/images/vmlinuz");
        assert_eq!(c.mem_mib, Some(128));
        assert_eq!(path_of(&c.block_devices[0].path), "/work/a b.img");
        assert_eq!(c.block_devices[0].aliases, vec!["hda1".to_string()]);
        assert_eq!(c.network[0].redirections[1].count, 3);
        assert_eq!(c.network[1].host_interface.as_deref(), Some("tap0"));
        assert_eq!(c.kernel_cmdline, "root=/dev/cobd0 console=ttyS0");
    }

    #[test]
    fn cofs_shares_with_read_only_flag() {
        let c = parse("kernel=/k cofs3=/work/b,ro cofs0=/work/a cofs1=rel,rw").unwrap();
        let got: Vec<(u32, String, bool)> = c
            .cofs
            .iter()
            .map(|s| (s.index, path_of(&s.path), s.read_only))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "/work/a".to_string(), false),
                (1, "/work/rel".to_string(), false),
                (3, "/work/b".to_string(), true)
            ]
        );
        assert_eq!(cofs_tag(&c.cofs[2]), "cofs3");
        assert_eq!(c.kernel_cmdline, "");
    }

    #[test]
    fn rejects_bad_mac_naming_it() {
        let e = parse("kernel=k eth0=slirp,zz").unwrap_err();
        assert!(e.to_string().contains("zz"), "{e}");
    }
}
