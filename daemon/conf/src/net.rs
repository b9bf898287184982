//! `ethN=` network interfaces: the four classic kinds, MAC addresses and slirp
//! port redirections.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lexer::quote_field;

/// Which host mechanism carries a NIC's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NetKind {
    /// User-mode NAT (`slirp`).
    #[serde(rename = "slirp")]
    Slirp,
    /// A host TAP adapter (`tuntap`).
    #[serde(rename = "tuntap")]
    Tuntap,
    /// Bridged onto a host adapter by packet capture (`pcap-bridge`).
    #[serde(rename = "pcap-bridge")]
    PcapBridge,
    /// Bridged onto a host adapter by a kernel driver (`ndis-bridge`).
    #[serde(rename = "ndis-bridge")]
    NdisBridge,
}

impl NetKind {
    /// The keyword used in `ethN=`.
    pub fn keyword(self) -> &'static str {
        match self {
            NetKind::Slirp => "slirp",
            NetKind::Tuntap => "tuntap",
            NetKind::PcapBridge => "pcap-bridge",
            NetKind::NdisBridge => "ndis-bridge",
        }
    }

    /// True for the two bridge kinds (they take `promisc|nopromisc`).
    pub fn is_bridge(self) -> bool {
        matches!(self, NetKind::PcapBridge | NetKind::NdisBridge)
    }

    fn from_keyword(s: &str) -> Option<Self> {
        Some(match s {
            "slirp" => NetKind::Slirp,
            "tuntap" => NetKind::Tuntap,
            "pcap-bridge" => NetKind::PcapBridge,
            "ndis-bridge" => NetKind::NdisBridge,
            _ => return None,
        })
    }
}

impl fmt::Display for NetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// An Ethernet MAC address; written and printed as `xx:xx:xx:xx:xx:xx`
/// (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A stable, locally derived address in the classic `00:FF:` range for a
    /// NIC without `MAC`: the same `seed` (e.g. the conf file path and NIC
    /// index) always gives the same address, so the guest keeps its DHCP lease
    /// across restarts, as the original daemon arranged.
    pub fn derived(seed: &str) -> Self {
        // FNV-1a, 64 bits: tiny, stable across builds and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x00, 0xff, b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ();

    /// Exactly six two-digit hex groups separated by `:`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("bad MAC address `{s}`")))
    }
}

/// Transport protocol of a slirp redirection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn keyword(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A slirp port redirection `proto:hostport:guestport[:count]`: host ports
/// `host_port .. host_port+count-1` forward to the same-sized guest range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Redirection {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// First host port (1..=65535).
    pub host_port: u16,
    /// First guest port (1..=65535).
    pub guest_port: u16,
    /// Number of consecutive ports (1 when not given).
    pub count: u16,
}

impl fmt::Display for Redirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.protocol.keyword(),
            self.host_port,
            self.guest_port
        )?;
        if self.count != 1 {
            write!(f, ":{}", self.count)?;
        }
        Ok(())
    }
}

/// What a redirection must look like (for error messages).
pub const REDIR_EXPECTED: &str =
    "redirections `tcp|udp:HOSTPORT:GUESTPORT[:COUNT]` joined by `/` (ports 1..65535)";

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|&p| p != 0)
}

impl FromStr for Redirection {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let parts: Vec<&str> = s.split(':').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(());
        }
        let protocol = match parts[0] {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(()),
        };
        let host_port = parse_port(parts[1]).ok_or(())?;
        let guest_port = parse_port(parts[2]).ok_or(())?;
        let count = match parts.get(3) {
            Some(c) => parse_port(c).ok_or(())?,
            None => 1,
        };
        let last = u32::from(count) - 1;
        if u32::from(host_port) + last > 65535 || u32::from(guest_port) + last > 65535 {
            return Err(());
        }
        Ok(Redirection {
            protocol,
            host_port,
            guest_port,
            count,
        })
    }
}

/// One `ethN=` network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDeviceConf {
    /// N in `ethN` (0..=15).
    pub index: u32,
    /// The host mechanism.
    pub kind: NetKind,
    /// The guest NIC's MAC, if given (else see [`MacAddr::derived`]).
    pub mac: Option<MacAddr>,
    /// The host adapter name (`tuntap`: optional; bridges: required).
    pub host_interface: Option<String>,
    /// Slirp port redirections (empty for other kinds).
    pub redirections: Vec<Redirection>,
    /// Bridges: capture in promiscuous mode (default true); `None` otherwise.
    #[serde(default)]
    pub promiscuous: Option<bool>,
    /// `tuntap`: the host IP field (accepted and ignored, as in the original).
    #[serde(default)]
    pub host_ip: Option<String>,
}

impl NetDeviceConf {
    /// The MAC the guest NIC uses: the configured one, or one derived from
    /// `vm_seed` and the NIC index (stable across runs of the same VM).
    pub fn effective_mac(&self, vm_seed: &str) -> MacAddr {
        self.mac
            .unwrap_or_else(|| MacAddr::derived(&format!("{vm_seed}#eth{}", self.index)))
    }

    /// The value written after `ethN=` in classic text.
    pub fn to_value(&self) -> String {
        let mut fields: Vec<String> = vec![self.kind.keyword().to_string()];
        let mac = self.mac.map(|m| m.to_string()).unwrap_or_default();
        let name = self
            .host_interface
            .as_deref()
            .map(quote_field)
            .unwrap_or_default();
        match self.kind {
            NetKind::Slirp => {
                let redirs: Vec<String> = self.redirections.iter().map(|r| r.to_string()).collect();
                fields.push(mac);
                fields.push(redirs.join("/"));
            }
            NetKind::Tuntap => {
                fields.push(name);
                fields.push(mac);
                fields.push(self.host_ip.as_deref().map(quote_field).unwrap_or_default());
            }
            NetKind::PcapBridge | NetKind::NdisBridge => {
                fields.push(name);
                fields.push(mac);
                fields.push(match self.promiscuous {
                    Some(false) => "nopromisc".to_string(),
                    _ => String::new(),
                });
            }
        }
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        fields.join(",")
    }
}

/// What an `ethN=` value must look like (for error messages).
pub const ETH_EXPECTED: &str = "slirp[,MAC[,REDIRS]] | tuntap[,\"NAME\"[,MAC[,HOSTIP]]] | \
     pcap-bridge,\"NAME\"[,MAC[,promisc|nopromisc]] | ndis-bridge,\"NAME\"[,MAC[,promisc|nopromisc]]";

/// Parses the (already split and unquoted) fields of an `ethN=` value.
/// The error is a description of what was expected.
pub fn parse_eth(index: u32, fields: &[String]) -> Result<NetDeviceConf, String> {
    let kind_word = fields.first().map(String::as_str).unwrap_or("");
    let kind = NetKind::from_keyword(kind_word).ok_or_else(|| {
        format!("a network type (slirp, tuntap, pcap-bridge or ndis-bridge), got `{kind_word}`")
    })?;
    let max_fields = match kind {
        NetKind::Slirp => 3,
        _ => 4,
    };
    if fields.len() > max_fields {
        return Err(format!(
            "at most {} comma-separated fields for {}: {}",
            max_fields,
            kind.keyword(),
            ETH_EXPECTED
        ));
    }
    let field = |i: usize| fields.get(i).map(String::as_str).filter(|s| !s.is_empty());
    let parse_mac = |i: usize| -> Result<Option<MacAddr>, String> {
        field(i)
            .map(|m| {
                m.parse::<MacAddr>()
                    .map_err(|_| format!("a MAC address xx:xx:xx:xx:xx:xx, got `{m}`"))
            })
            .transpose()
    };
    let mut dev = NetDeviceConf {
        index,
        kind,
        mac: None,
        host_interface: None,
        redirections: Vec::new(),
        promiscuous: None,
        host_ip: None,
    };
    match kind {
        NetKind::Slirp => {
            dev.mac = parse_mac(1)?;
            if let Some(r) = field(2) {
                for one in r.split('/') {
                    let redir = one
                        .parse::<Redirection>()
                        .map_err(|_| format!("{REDIR_EXPECTED}, got `{one}`"))?;
                    dev.redirections.push(redir);
                }
            }
        }
        NetKind::Tuntap => {
            dev.host_interface = field(1).map(str::to_string);
            dev.mac = parse_mac(2)?;
            dev.host_ip = field(3).map(str::to_string);
        }
        NetKind::PcapBridge | NetKind::NdisBridge => {
            dev.host_interface = Some(
                field(1)
                    .ok_or_else(|| {
                        format!(
                            "the host adapter name: {},\"NAME\"[,MAC[,promisc|nopromisc]]",
                            kind.keyword()
                        )
                    })?
                    .to_string(),
            );
            dev.mac = parse_mac(2)?;
            dev.promiscuous = Some(match field(3) {
                None | Some("promisc") => true,
                Some("nopromisc") => false,
                Some(other) => return Err(format!("`promisc` or `nopromisc`, got `{other}`")),
            });
        }
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "00:FF:0a:1B:2c:3D".parse().unwrap();
        assert_eq!(m.to_string(), "00:ff:0a:1b:2c:3d");
        for bad in [
            "00:ff:0a:1b:2c",
            "00:ff:0a:1b:2c:3d:4e",
            "0:ff:0a:1b:2c:3d",
            "00-ff-0a-1b-2c-3d",
            "zz:ff:0a:1b:2c:3d",
            "+0:ff:0a:1b:2c:3d",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_mac_is_stable_and_classic() {
        let a = MacAddr::derived("/vm/a.conf#eth0");
        assert_eq!(a, MacAddr::derived("/vm/a.conf#eth0"));
        assert_ne!(a, MacAddr::derived("/vm/a.conf#eth1"));
        assert_eq!(&a.0[..2], &[0x00, 0xff]);
    }

    #[test]
    fn redirection_ranges() {
        assert!("tcp:65535:22".parse::<Redirection>().is_ok());
        assert!("tcp:65535:22:2".parse::<Redirection>().is_err());
        assert!("tcp:0:22".parse::<Redirection>().is_err());
        assert!("sctp:1:2".parse::<Redirection>().is_err());
        let r: Redirection = "udp:5000:6000:10".parse().unwrap();
        assert_eq!(r.to_string(), "udp:5000:6000:10");
    }
}
