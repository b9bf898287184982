//! Building a backend from a `colinux.conf` network entry (`ethN=TYPE,...`).
//!
//! The NIC kind and the slirp redirections are the configuration model's own
//! types ([`colinux_conf::NetKind`], [`colinux_conf::Redirection`]); the daemon
//! fills a [`NicSpec`] from an `ethN` entry and calls [`open_backend`].

use std::net::Ipv4Addr;

pub use colinux_conf::{NetKind, Protocol, Redirection};

use crate::{NetBackend, NetError, PacketBridge, SlirpBackend, TapBackend};

/// The (host, guest) port pairs `r` covers, or an error when a port is 0, the
/// count is 0, or the range runs past 65535 (the conf parser refuses those, a
/// hand-built [`Redirection`] may not).
pub fn port_pairs(r: &Redirection) -> Result<Vec<(u16, u16)>, NetError> {
    let bad = |why| NetError::BadRedirection(r.to_string(), why);
    if r.host_port == 0 || r.guest_port == 0 {
        return Err(bad("port 0"));
    }
    if r.count == 0 {
        return Err(bad("count 0"));
    }
    let last = |p: u16| u32::from(p) + u32::from(r.count) - 1;
    if last(r.host_port) > 65535 || last(r.guest_port) > 65535 {
        return Err(bad("port range runs past 65535"));
    }
    Ok((0..r.count)
        .map(|i| (r.host_port + i, r.guest_port + i))
        .collect())
}

/// Everything needed to open one NIC's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// The `ethN=` type.
    pub kind: NetKind,
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
    pub fn new(kind: NetKind, mac: [u8; 6]) -> Self {
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
        NetKind::Slirp => Box::new(SlirpBackend::new(&spec.redirections, spec.redirect_bind)?),
        NetKind::Tuntap => Box::new(TapBackend::open(spec.host_interface.as_deref())?),
        NetKind::PcapBridge | NetKind::NdisBridge => {
            let name = spec
                .host_interface
                .as_deref()
                .ok_or(NetError::MissingInterface {
                    kind: spec.kind.keyword(),
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
            port_pairs(&r(2222, 22, 3)).unwrap(),
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
        let e = port_pairs(&red).unwrap_err();
        assert!(e.to_string().contains(&red.to_string()), "{e}");
    }

    #[test]
    fn last_port_is_fine() {
        assert_eq!(
            port_pairs(&r(65535, 65535, 1)).unwrap(),
            vec![(65535, 65535)]
        );
    }

    #[test]
    fn missing_bridge_interface() {
        let spec = NicSpec::new(NetKind::PcapBridge, [2, 0, 0, 0, 0, 1]);
        assert!(matches!(
            open_backend(&spec),
            Err(NetError::MissingInterface {
                kind: "pcap-bridge"
            })
        ));
    }
}
