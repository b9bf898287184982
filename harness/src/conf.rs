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

/// One `cobdN=FILE` (with its alias names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// N of cobdN.
    pub index: u32,
    /// Host path of the backing file.
    pub path: String,
    /// Extra guest names (`hda1=:cobd0`).
    pub aliases: Vec<String>,
}

/// One `cofsN=DIR[,ro]` host directory share (virtio-fs, tag `cofsN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CofsShare {
    /// N of cofsN.
    pub index: u32,
    /// Host directory shared.
    pub path: String,
    /// `,ro`: the guest may read but not change anything.
    pub read_only: bool,
}

impl CofsShare {
    /// The virtio-fs tag the guest mounts (`mount -t virtiofs cofsN DIR`).
    pub fn tag(&self) -> String {
        format!("cofs{}", self.index)
    }
}

/// The kind of an `ethN=` network device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetKind {
    /// User-mode NAT.
    Slirp,
    /// A TAP interface.
    Tuntap,
    /// Bridged onto a host interface.
    PcapBridge,
}

/// One `proto:hostport:guestport[:count]` redirection of a slirp NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirection {
    /// "tcp" or "udp".
    pub protocol: String,
    /// First host port.
    pub host_port: u16,
    /// First guest port.
    pub guest_port: u16,
    /// Number of consecutive ports.
    pub count: u16,
}

/// One `ethN=` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// N of ethN.
    pub index: u32,
    /// Backend kind.
    pub kind: NetKind,
    /// MAC address, if given.
    pub mac: Option<String>,
    /// TAP name or bridged interface, if given.
    pub host_interface: Option<String>,
    /// Slirp port forwards.
    pub redirections: Vec<Redirection>,
}

/// The parts of a colinux.conf the harness uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conf {
    /// kernel=
    pub kernel: String,
    /// initrd=
    pub initrd: Option<String>,
    /// mem= (MiB)
    pub mem_mib: Option<u64>,
    /// cobdN= sorted by index.
    pub block_devices: Vec<BlockDevice>,
    /// ethN= sorted by index.
    pub network: Vec<NetDevice>,
    /// cofsN= sorted by index.
    pub cofs: Vec<CofsShare>,
    /// Every other word, in order.
    pub kernel_cmdline: String,
}

/// Parse conf text with the project's parser (`colinux-conf`), keeping the
/// parts the harness uses. Relative paths are taken as relative to /work.
pub fn parse(text: &str) -> Result<Conf, ConfError> {
    let c = colinux_conf::parse_str(text, Path::new("colinux.conf"), Path::new("/work"))
        .map_err(|e| ConfError::Invalid(e.to_string()))?;
    let path = |p: &colinux_conf::ConfPath| p.resolve().display().to_string();
    let mut block_devices: Vec<BlockDevice> = c
        .block_devices
        .iter()
        .map(|b| BlockDevice {
            index: b.index,
            path: path(&b.path),
            aliases: b.aliases.clone(),
        })
        .collect();
    block_devices.sort_by_key(|b| b.index);
    let mut network: Vec<NetDevice> = c
        .network
        .iter()
        .map(|n| NetDevice {
            index: n.index,
            kind: match n.kind {
                colinux_conf::NetKind::Slirp => NetKind::Slirp,
                colinux_conf::NetKind::Tuntap => NetKind::Tuntap,
                colinux_conf::NetKind::PcapBridge | colinux_conf::NetKind::NdisBridge => {
                    NetKind::PcapBridge
                }
            },
            mac: n.mac.map(|m| m.to_string()),
            host_interface: n.host_interface.clone(),
            redirections: n
                .redirections
                .iter()
                .map(|r| Redirection {
                    protocol: r.protocol.keyword().to_string(),
                    host_port: r.host_port,
                    guest_port: r.guest_port,
                    count: r.count,
                })
                .collect(),
        })
        .collect();
    network.sort_by_key(|n| n.index);
    let mut cofs: Vec<CofsShare> = c
        .cofs
        .iter()
        .map(|s| CofsShare {
            index: s.index,
            path: path(&s.path),
            read_only: s.read_only,
        })
        .collect();
    cofs.sort_by_key(|s| s.index);
    Ok(Conf {
        kernel: path(&c.kernel),
        initrd: c.initrd.as_ref().map(path),
        mem_mib: c.mem_mib,
        block_devices,
        network,
        cofs,
        kernel_cmdline: c.kernel_cmdline.clone(),
    })
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
        assert_eq!(c.kernel, "/images/vmlinuz");
        assert_eq!(c.mem_mib, Some(128));
        assert_eq!(c.block_devices[0].path, "/work/a b.img");
        assert_eq!(c.block_devices[0].aliases, vec!["hda1".to_string()]);
        assert_eq!(c.network[0].redirections[1].count, 3);
        assert_eq!(c.network[1].host_interface.as_deref(), Some("tap0"));
        assert_eq!(c.kernel_cmdline, "root=/dev/cobd0 console=ttyS0");
    }

    #[test]
    fn cofs_shares_with_read_only_flag() {
        let c = parse("kernel=/k cofs3=/work/b,ro cofs0=/work/a cofs1=rel,rw").unwrap();
        let got: Vec<(u32, &str, bool)> = c
            .cofs
            .iter()
            .map(|s| (s.index, s.path.as_str(), s.read_only))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "/work/a", false),
                (1, "/work/rel", false),
                (3, "/work/b", true)
            ]
        );
        assert_eq!(c.cofs[2].tag(), "cofs3");
        assert_eq!(c.kernel_cmdline, "");
    }

    #[test]
    fn rejects_bad_mac_naming_it() {
        let e = parse("kernel=k eth0=slirp,zz").unwrap_err();
        assert!(e.to_string().contains("zz"), "{e}");
    }
}
