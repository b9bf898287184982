//! Properties: any valid model survives model -> text -> parse unchanged, and
//! no input at all makes the parser panic (it gives a model or an error with
//! a line number).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use colinux_conf::keys::{classify, Key, VGA_COLORS};
use colinux_conf::{
    parse_args, parse_bytes, parse_str, BlockDeviceConf, CobdMode, CofsShare, ConfPath, Config,
    ConsoleColors, ExecProgram, MacAddr, NetDeviceConf, NetKind, Protocol, Redirection,
    SerialPortConf,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::option;
use proptest::prelude::*;

const BASE: &str = "/base/dir";

fn base() -> Option<Arc<PathBuf>> {
    Some(Arc::new(PathBuf::from(BASE)))
}

/// Text with the characters that need care: spaces, quotes, commas, `#`,
/// `=`, backslashes, colons, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.,#=\"\\\\/:@éü漢-]{1,16}"
}

fn path() -> impl Strategy<Value = ConfPath> {
    text().prop_map(|s| ConfPath::new(s, base()))
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn redirection() -> impl Strategy<Value = Redirection> {
    (any::<bool>(), 1u16..=65535, 1u16..=65535, 1u16..=100).prop_map(|(tcp, h, g, c)| {
        let room = 65535 - h.max(g) + 1;
        Redirection {
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            host_port: h,
            guest_port: g,
            count: c.min(room),
        }
    })
}

fn net_device(index: u32) -> impl Strategy<Value = NetDeviceConf> {
    (
        0..4u8,
        option::of(mac()),
        option::of(text()),
        vec(redirection(), 0..4),
        any::<bool>(),
        option::of("[0-9.]{1,15}"),
    )
        .prop_map(move |(k, mac, name, redirs, promisc, ip)| {
            let kind = [
                NetKind::Slirp,
                NetKind::Tuntap,
                NetKind::PcapBridge,
                NetKind::NdisBridge,
            ][k as usize];
            let mut d = NetDeviceConf {
                index,
                kind,
                mac,
                host_interface: None,
                redirections: Vec::new(),
                promiscuous: None,
                host_ip: None,
            };
            match kind {
                NetKind::Slirp => d.redirections = redirs,
                NetKind::Tuntap => {
                    d.host_interface = name;
                    d.host_ip = ip;
                }
                _ => {
                    d.host_interface = Some(name.unwrap_or_else(|| "eth0".into()));
                    d.promiscuous = Some(promisc);
                }
            }
            d
        })
}

fn kernel_word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.]{0,6}(=[a-z0-9/.,]{1,8})?".prop_filter("not a configuration key", |w| {
        let key = w.split('=').next().unwrap_or_default();
        !w.contains('=') || classify(key) == Key::Kernel
    })
}

fn console() -> impl Strategy<Value = String> {
    (1u32..=1000, 1u32..=1000, option::of(0u32..=100_000)).prop_map(|(c, r, s)| match s {
        Some(s) => format!("{c}x{r}x{s}"),
        None => format!("{c}x{r}"),
    })
}

fn config() -> impl Strategy<Value = Config> {
    let disks = btree_map(
        0u32..=31,
        (path(), btree_set("[hs]d[a-z][1-9]?", 0..3)),
        0..6,
    );
    let nets = btree_set(0u32..=15, 0..4)
        .prop_flat_map(|idx| idx.into_iter().map(net_device).collect::<Vec<_>>());
    (
        (
            path(),
            option::of(path()),
            option::of(1u64..=(1 << 20)),
            any::<bool>(),
            disks,
            btree_map(0u32..=31, (path(), any::<bool>()), 0..3),
        ),
        (
            nets,
            btree_map(0u32..=31, (text(), option::of(text())), 0..3),
            btree_map(0u32..=7, (path(), option::of(text())), 0..3),
            option::of(console()),
            option::of(0u8..=100),
            option::of((0..16usize, 0..16usize)),
            vec(kernel_word(), 0..6),
        ),
    )
        .prop_map(
            |(
                (kernel, initrd, mem, asynch, disks, cofs),
                (network, ttys, exec, console, cursor, color, words),
            )| {
                let mut seen = BTreeSet::new();
                Config {
                    kernel,
                    initrd,
                    mem_mib: mem,
                    block_devices: disks
                        .into_iter()
                        .map(|(index, (path, aliases))| BlockDeviceConf {
                            index,
                            path,
                            aliases: aliases
                                .into_iter()
                                .filter(|a| seen.insert(a.clone()))
                                .collect(),
                        })
                        .collect(),
                    cofs: cofs
                        .into_iter()
                        .map(|(index, (path, read_only))| CofsShare {
                            index,
                            path,
                            read_only,
                        })
                        .collect(),
                    network,
                    serial: ttys
                        .into_iter()
                        .map(|(index, (device, options))| SerialPortConf {
                            index,
                            device,
                            options,
                        })
                        .collect(),
                    exec: exec
                        .into_iter()
                        .map(|(index, (program, arguments))| ExecProgram {
                            index,
                            program,
                            arguments,
                        })
                        .collect(),
                    console,
                    kernel_cmdline: words.join(" "),
                    setcobd: if asynch {
                        CobdMode::Async
                    } else {
                        CobdMode::Sync
                    },
                    cursor,
                    color: color.map(|(f, b)| ConsoleColors {
                        foreground: VGA_COLORS[f].to_string(),
                        background: VGA_COLORS[b].to_string(),
                    }),
                }
            },
        )
}

/// Fragments that make word-like inputs, so the fuzz reaches past the lexer.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("kernel=".to_string()),
        Just("cobd0=".to_string()),
        Just("cobd31=".to_string()),
        Just("cobd32=".to_string()),
        Just("hda1=".to_string()),
        Just(":cobd0".to_string()),
        Just("eth0=".to_string()),
        Just("eth15=".to_string()),
        Just("slirp".to_string()),
        Just("tuntap".to_string()),
        Just("pcap-bridge".to_string()),
        Just("ndis-bridge".to_string()),
        Just("tcp:22:2222".to_string()),
        Just("00:11:22:33:44:55".to_string()),
        Just("exec0=".to_string()),
        Just("ttys0=".to_string()),
        Just("cocon=".to_string()),
        Just("mem=".to_string()),
        Just("color=".to_string()),
        Just("\"".to_string()),
        Just(",".to_string()),
        Just("/".to_string()),
        Just(":".to_string()),
        Just("#".to_string()),
        Just("=".to_string()),
        Just(" ".to_string()),
        Just("\r\n".to_string()),
        Just("\n".to_string()),
        "[0-9]{1,6}",
        "[a-z]{1,5}",
        any::<char>().prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn model_text_model_round_trip(c in config()) {
        let text = c.to_conf_text();
        let parsed = parse_str(&text, Path::new("gen.conf"), Path::new(BASE));
        prop_assert!(parsed.is_ok(), "text did not parse: {:?}\n{}", parsed.err(), text);
        prop_assert_eq!(parsed.unwrap(), c, "text:\n{}", text);
    }

    #[test]
    fn json_round_trip_keeps_text(c in config()) {
        let back: Config = serde_json::from_str(&c.to_json_pretty()).unwrap();
        prop_assert_eq!(back.to_conf_text(), c.to_conf_text());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        check_no_panic(&bytes);
    }

    #[test]
    fn arbitrary_words_never_panic(parts in vec(fragment(), 0..40)) {
        check_no_panic(parts.concat().as_bytes());
    }

    #[test]
    fn arbitrary_command_line_never_panics(parts in vec(vec(fragment(), 1..6), 0..8)) {
        let words: Vec<String> = parts.iter().map(|p| p.concat()).collect();
        match parse_args(&words, Path::new("/nonexistent-colinux-test-dir")) {
            Ok(c) => { let _ = c.to_conf_text(); }
            Err(e) => {
                prop_assert!(e.line() >= 1 && e.line() <= words.len(), "{} for {:?}", e, words);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

fn check_no_panic(bytes: &[u8]) {
    let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
    match parse_bytes(
        bytes,
        Path::new("fuzz.conf"),
        Path::new("/nonexistent-colinux-test-dir"),
    ) {
        Ok(c) => {
            // A model that parsed must write out and parse again identically
            // (when its command line holds nothing that looks like a key).
            let text = c.to_conf_text();
            let again = parse_str(
                &text,
                Path::new("again.conf"),
                Path::new("/nonexistent-colinux-test-dir"),
            );
            assert!(
                again.is_ok(),
                "rewritten text fails: {:?}\n{text}",
                again.err()
            );
        }
        Err(e) => {
            assert!(
                e.line() >= 1 && e.line() <= lines,
                "line {} of {lines}: {e}",
                e.line()
            );
            assert!(e.to_string().starts_with("fuzz.conf:"), "{e}");
        }
    }
}
