//! Building a backend from a `colinux.conf` network entry (`ethN=TYPE,...`).
//!
//! These are plain types so this crate does not depend on the configuration
//! parser; the daemon maps its `ethN` model onto [`NicSpec`] and calls
//! [`open_backend`].

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::{NetBackend, NetError, PacketBridge, SlirpBackend, TapBackend};

/// The NIC types of classic coLinux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NicKind {
    /// `slirp`: user-mode NAT.
    Slirp,
    /// `tuntap`: a TAP device on the host.
    TunTap,
    /// `pcap-bridge`: bridged onto a host interface (here by AF_PACKET).
    PcapBridge,
    /// `ndis-bridge`: same as `pcap-bridge` on a Linux host.
    NdisBridge,
}

impl NicKind {
    /// The configuration word for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            NicKind::Slirp => "slirp",
            NicKind::TunTap => "tuntap",
            NicKind::PcapBridge => "pcap-bridge",
            NicKind::NdisBridge => "ndis-bridge",
        }
    }
}

impl fmt::Display for NicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NicKind {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        match s {
            "slirp" => Ok(NicKind::Slirp),
            "tuntap" => Ok(NicKind::TunTap),
            "pcap-bridge" => Ok(NicKind::PcapBridge),
            "ndis-bridge" => Ok(NicKind::NdisBridge),
            other => Err(NetError::UnknownKind(other.to_string())),
        }
    }
}

/// Transport protocol of a slirp redirection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    /// `tcp:`
    Tcp,
    /// `udp:`
    Udp,
}

/// A slirp host→guest port redirection `proto:hostport:guestport[:count]`;
/// `count` consecutive ports starting at each side are forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Redirection {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// First host port.
    pub host_port: u16,
    /// First guest port.
    pub guest_port: u16,
    /// How many consecutive ports (1 when the conf gives no count).
    pub count: u16,
}

impl fmt::Display for Redirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{p}:{}:{}", self.host_port, self.guest_port)?;
        if self.count != 1 {
            write!(f, ":{}", self.count)?;
        }
        Ok(())
    }
}

impl Redirection {
    /// The (host, guest) port pairs this redirection covers, or an error when a
    /// port is 0, the count is 0, or the range runs past 65535.
    pub fn port_pairs(&self) -> Result<Vec<(u16, u16)>, NetError> {
        let bad = |why| NetError::BadRedirection(self.to_string(), why);
        if self.host_port == 0 || self.guest_port == 0 {
            return Err(bad("port 0"));
        }
        if self.count == 0 {
            return Err(bad("count 0"));
        }
        let last = |p: u16| u32::from(p) + u32::from(self.count) - 1;
        if last(self.host_port) > 65535 || last(self.guest_port) > 65535 {
            return Err(bad("port range runs past 65535"));
        }
        Ok((0..self.count)
            .map(|i| (self.host_port + i, self.guest_port + i))
            .collect())
    }
}

/// Everything needed to open one NIC's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// The `ethN=` type.
    pub kind: NicKind,
    /// TAP name (created if absent; `None` generates `colinux%d`), or the host
    /// interface a bridge attaches to (required for bridges). Unused by slirp.
    pub host_interface: Option<String>,
    /// The guest NIC's MAC: the bridge accepts frames for it (and multicast).
    pub mac: [u8; 6],
    /// slirp redirections (ignored by other types).
    pub redirections: Vec<Redirection>,
    /// Host address slirp redirections listen on: 127.0.0.1 by default, so only
    /// the host itself reaches the guest; set 0.0.0.0 (or an interface address)
    /// to expose the ports to the LAN.
    pub redirect_bind: Ipv4Addr,
    /// Bridge only: put the host interface in promiscuous mode (`promisc`, the
    /// classic default) or only add the guest MAC to its filter (`nopromisc`).
    pub promiscuous: bool,
}

impl NicSpec {
    /// A spec with classic defaults: no interface, no redirections, bind
    /// 127.0.0.1, promiscuous.
    pub fn new(kind: NicKind, mac: [u8; 6]) -> Self {
        NicSpec {
            kind,
            host_interface: None,
            mac,
            redirections: Vec::new(),
            redirect_bind: Ipv4Addr::LOCALHOST,
            promiscuous: true,
        }
    }
}

/// Opens the backend `spec` describes.
pub fn open_backend(spec: &NicSpec) -> Result<Box<dyn NetBackend>, NetError> {
    let backend: Box<dyn NetBackend> = match spec.kind {
        NicKind::Slirp => Box::new(SlirpBackend::new(&spec.redirections, spec.redirect_bind)?),
        NicKind::TunTap => Box::new(TapBackend::open(spec.host_interface.as_deref())?),
        NicKind::PcapBridge | NicKind::NdisBridge => {
            let name = spec
                .host_interface
                .as_deref()
                .ok_or(NetError::MissingInterface {
                    kind: spec.kind.as_str(),
                })?;
            Box::new(PacketBridge::open(name, spec.mac, spec.promiscuous)?)
        }
    };
    tracing::info!(target: "colinux_net", kind = %spec.kind, interface = ?spec.host_interface, "network backend open");
    Ok(backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn r(host: u16, guest: u16, count: u16) -> Redirection {
        Redirection {
            protocol: Protocol::Tcp,
            host_port: host,
            guest_port: guest,
            count,
        }
    }

    #[test]
    fn count_forwards_a_range() {
        assert_eq!(
            r(2222, 22, 3).port_pairs().unwrap(),
            vec![(2222, 22), (2223, 23), (2224, 24)]
        );
    }

    #[rstest]
    #[case(r(0, 22, 1))]
    #[case(r(22, 0, 1))]
    #[case(r(22, 22, 0))]
    #[case(r(65535, 22, 2))]
    #[case(r(22, 65000, 600))]
    fn bad_ranges_are_errors(#[case] red: Redirection) {
        let e = red.port_pairs().unwrap_err();
        assert!(e.to_string().contains(&red.to_string()), "{e}");
    }

    #[test]
    fn last_port_is_fine() {
        assert_eq!(
            r(65535, 65535, 1).port_pairs().unwrap(),
            vec![(65535, 65535)]
        );
    }

    #[rstest]
    #[case("slirp", NicKind::Slirp)]
    #[case("tuntap", NicKind::TunTap)]
    #[case("pcap-bridge", NicKind::PcapBridge)]
    #[case("ndis-bridge", NicKind::NdisBridge)]
    fn kinds_round_trip(#[case] word: &str, #[case] kind: NicKind) {
        assert_eq!(word.parse::<NicKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), word);
    }

    #[test]
    fn unknown_kind_and_missing_bridge_interface() {
        assert!(matches!(
            "tap".parse::<NicKind>(),
            Err(NetError::UnknownKind(_))
        ));
        let spec = NicSpec::new(NicKind::PcapBridge, [2, 0, 0, 0, 0, 1]);
        assert!(matches!(
            open_backend(&spec),
            Err(NetError::MissingInterface {
                kind: "pcap-bridge"
            })
        ));
    }
}
