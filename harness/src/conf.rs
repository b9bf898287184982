//! A deliberately tiny reader of the colinux.conf words the harness needs to
//! derive an inner QEMU command line. It mirrors the shape of `colinux-conf`'s
//! model (kernel, initrd, mem_mib, block_devices, network, kernel_cmdline) so
//! that switching to that crate is a local change. The daemon itself always
//! reads the conf with the real parser.

use thiserror::Error;

/// A conf word the harness cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfError {
    /// The value of a key is malformed.
    #[error("colinux.conf word {index} `{word}`: {reason}")]
    BadWord {
        /// 1-based word number.
        index: usize,
        /// The word as written.
        word: String,
        /// What is wrong.
        reason: String,
    },
    /// No `kernel=` word.
    #[error("colinux.conf has no kernel= word")]
    NoKernel,
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
    /// Every other word, in order.
    pub kernel_cmdline: String,
}

/// Split conf text into words: whitespace separates, `"` quotes, `#` comments.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut cur = String::new();
        let mut has = false;
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    has = true;
                    cur.push(c);
                }
                '#' if !quoted => break,
                c if c.is_whitespace() && !quoted => {
                    if has {
                        out.push(std::mem::take(&mut cur));
                        has = false;
                    }
                }
                c => {
                    cur.push(c);
                    has = true;
                }
            }
        }
        if has {
            out.push(cur);
        }
    }
    out
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
        .to_string()
}

/// Split a comma list, honouring quotes.
fn fields(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("nonempty").push(c),
        }
    }
    out
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_alias_name(k: &str) -> bool {
    let b = k.as_bytes();
    b.len() >= 3
        && (k.starts_with("hd") || k.starts_with("sd"))
        && b[2].is_ascii_lowercase()
        && k[3..].chars().all(|c| c.is_ascii_digit())
}

/// Parse conf text.
pub fn parse(text: &str) -> Result<Conf, ConfError> {
    let mut c = Conf::default();
    let mut cmdline: Vec<String> = Vec::new();
    let mut pending_alias: Vec<(String, String)> = Vec::new();
    for (i, w) in words(text).into_iter().enumerate() {
        let bad = |reason: &str| ConfError::BadWord {
            index: i + 1,
            word: w.clone(),
            reason: reason.to_string(),
        };
        let Some((key, val)) = w.split_once('=') else {
            cmdline.push(w.clone());
            continue;
        };
        let idx = |prefix: &str| -> Option<u32> {
            key.strip_prefix(prefix)
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
        };
        if key == "kernel" {
            c.kernel = unquote(val);
        } else if key == "initrd" {
            c.initrd = Some(unquote(val));
        } else if key == "mem" {
            c.mem_mib = Some(val.parse().map_err(|_| bad("mem= needs MiB"))?);
        } else if let Some(n) = idx("cobd") {
            c.block_devices.push(BlockDevice {
                index: n,
                path: unquote(val),
                aliases: vec![],
            });
        } else if let Some(n) = idx("eth") {
            let f = fields(val);
            let kind = match f[0].as_str() {
                "slirp" => NetKind::Slirp,
                "tuntap" => NetKind::Tuntap,
                "pcap-bridge" | "ndis-bridge" => NetKind::PcapBridge,
                _ => return Err(bad("unknown network type")),
            };
            let get = |k: usize| f.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
            let mut dev = NetDevice {
                index: n,
                kind: kind.clone(),
                mac: None,
                host_interface: None,
                redirections: vec![],
            };
            match kind {
                NetKind::Slirp => {
                    dev.mac = get(1).map(String::from);
                    if let Some(r) = get(2) {
                        for spec in r.split('/') {
                            let p: Vec<&str> = spec.split(':').collect();
                            let port = |s: &str| s.parse::<u16>().map_err(|_| bad("bad port"));
                            if p.len() < 3 || !(p[0] == "tcp" || p[0] == "udp") {
                                return Err(bad("redirection must be proto:host:guest[:count]"));
                            }
                            dev.redirections.push(Redirection {
                                protocol: p[0].to_string(),
                                host_port: port(p[1])?,
                                guest_port: port(p[2])?,
                                count: if p.len() > 3 { port(p[3])? } else { 1 },
                            });
                        }
                    }
                }
                _ => {
                    dev.host_interface = get(1).map(String::from);
                    dev.mac = get(2).map(String::from);
                }
            }
            if let Some(m) = &dev.mac {
                if !is_mac(m) {
                    return Err(bad("MAC must be xx:xx:xx:xx:xx:xx"));
                }
            }
            c.network.push(dev);
        } else if is_alias_name(key) {
            match val.strip_prefix(':') {
                Some(target) => pending_alias.push((key.to_string(), target.to_string())),
                None => {
                    let n = (0..32)
                        .find(|n| !c.block_devices.iter().any(|b| b.index == *n))
                        .ok_or_else(|| bad("no free cobd"))?;
                    c.block_devices.push(BlockDevice {
                        index: n,
                        path: unquote(val),
                        aliases: vec![key.to_string()],
                    });
                }
            }
        } else {
            cmdline.push(w.clone());
        }
    }
    for (name, target) in pending_alias {
        let n: Option<u32> = target.strip_prefix("cobd").and_then(|n| n.parse().ok());
        match c.block_devices.iter_mut().find(|b| Some(b.index) == n) {
            Some(b) => b.aliases.push(name),
            None => {
                return Err(ConfError::BadWord {
                    index: 0,
                    word: format!("{name}=:{target}"),
                    reason: "alias of an undefined cobd".into(),
                })
            }
        }
    }
    if c.kernel.is_empty() {
        return Err(ConfError::NoKernel);
    }
    c.block_devices.sort_by_key(|b| b.index);
    c.network.sort_by_key(|n| n.index);
    c.kernel_cmdline = cmdline.join(" ");
    Ok(c)
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
    fn rejects_bad_mac_with_word_number() {
        let e = parse("kernel=k eth0=slirp,zz").unwrap_err();
        assert!(matches!(e, ConfError::BadWord { index: 2, .. }), "{e}");
    }
}
