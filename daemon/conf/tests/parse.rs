//! Table tests of the classic configuration forms and their errors.

use std::path::Path;

use colinux_conf::{
    parse_args, parse_str, CobdMode, ConfError, Config, ErrorKind, MacAddr, NetKind, Protocol,
    Redirection, Source,
};
use rstest::rstest;

fn parse(text: &str) -> Result<Config, ConfError> {
    parse_str(text, Path::new("/vm/test.conf"), Path::new("/vm"))
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
}

fn err(text: &str) -> ConfError {
    match parse(text) {
        Ok(c) => panic!("`{text}` should fail, got {c:?}"),
        Err(e) => e,
    }
}

fn mac(s: &str) -> Option<MacAddr> {
    Some(s.parse().unwrap())
}

fn redir(p: Protocol, h: u16, g: u16, c: u16) -> Redirection {
    Redirection {
        protocol: p,
        host_port: h,
        guest_port: g,
        count: c,
    }
}

#[test]
fn typical_debian_conf() {
    let c = ok(
        "kernel=vmlinux\ncobd0=Debian-3.0r0.ext3.1gb\ncobd1=swap_512Mb\n\
                root=/dev/cobd0 ro initrd=initrd.gz mem=128 eth0=tuntap\n",
    );
    assert_eq!(c.kernel.raw, "vmlinux");
    assert_eq!(c.kernel.resolve(), Path::new("/vm/vmlinux"));
    assert_eq!(c.initrd.as_ref().unwrap().raw, "initrd.gz");
    assert_eq!(c.mem_mib, Some(128));
    assert_eq!(c.block_devices.len(), 2);
    assert_eq!(c.block_devices[1].path.raw, "swap_512Mb");
    assert_eq!(c.network[0].kind, NetKind::Tuntap);
    assert_eq!(c.network[0].host_interface, None);
    assert_eq!(c.kernel_cmdline, "root=/dev/cobd0 ro");
}

#[test]
fn defaults() {
    let c = ok("# nothing but a comment\n");
    assert_eq!(c.kernel.raw, "vmlinux");
    assert_eq!(c.kernel.resolve(), Path::new("/vm/vmlinux"));
    assert_eq!(c.initrd, None);
    assert_eq!(c.mem_mib, None);
    assert_eq!(c.setcobd, CobdMode::Sync);
    assert_eq!(c.kernel_cmdline, "");
    assert_eq!(c.console_geometry().cols, 80);
}

#[rstest]
#[case::slirp_bare("slirp", NetKind::Slirp, None, None, vec![], None)]
#[case::slirp_mac("slirp,00:11:22:33:44:55", NetKind::Slirp, mac("00:11:22:33:44:55"), None, vec![], None)]
#[case::slirp_upper_mac("slirp,00:AA:BB:CC:DD:EE", NetKind::Slirp, mac("00:aa:bb:cc:dd:ee"), None, vec![], None)]
#[case::slirp_redir("slirp,00:11:22:33:44:55,tcp:2222:22", NetKind::Slirp, mac("00:11:22:33:44:55"), None,
    vec![redir(Protocol::Tcp, 2222, 22, 1)], None)]
#[case::slirp_redirs_count("slirp,,tcp:2222:22/udp:5000:5000:10", NetKind::Slirp, None, None,
    vec![redir(Protocol::Tcp, 2222, 22, 1), redir(Protocol::Udp, 5000, 5000, 10)], None)]
#[case::tuntap_bare("tuntap", NetKind::Tuntap, None, None, vec![], None)]
#[case::tuntap_name("tuntap,\"TAP-colinux\"", NetKind::Tuntap, None, Some("TAP-colinux"), vec![], None)]
#[case::tuntap_spaces("tuntap,\"Local Area Connection 2\",00:ff:00:00:00:01", NetKind::Tuntap,
    mac("00:ff:00:00:00:01"), Some("Local Area Connection 2"), vec![], None)]
#[case::tuntap_comma_in_quotes("tuntap,\"TAP, second\"", NetKind::Tuntap, None, Some("TAP, second"), vec![], None)]
#[case::tuntap_literal_quote("tuntap,\"my \"\"tap\"\"\"", NetKind::Tuntap, None, Some("my \"tap\""), vec![], None)]
#[case::tuntap_host_ip("tuntap,tap0,00:11:22:33:44:55,192.168.37.1", NetKind::Tuntap,
    mac("00:11:22:33:44:55"), Some("tap0"), vec![], None)]
#[case::pcap("pcap-bridge,\"Local Area Connection\"", NetKind::PcapBridge, None,
    Some("Local Area Connection"), vec![], Some(true))]
#[case::pcap_mac_promisc("pcap-bridge,eth0,00:11:22:33:44:55,promisc", NetKind::PcapBridge,
    mac("00:11:22:33:44:55"), Some("eth0"), vec![], Some(true))]
#[case::pcap_nopromisc("pcap-bridge,eth0,,nopromisc", NetKind::PcapBridge, None, Some("eth0"), vec![], Some(false))]
#[case::ndis("ndis-bridge,\"Wireless Network Connection\",00:11:22:33:44:55,nopromisc", NetKind::NdisBridge,
    mac("00:11:22:33:44:55"), Some("Wireless Network Connection"), vec![], Some(false))]
fn network_forms(
    #[case] value: &str,
    #[case] kind: NetKind,
    #[case] mac: Option<MacAddr>,
    #[case] name: Option<&str>,
    #[case] redirs: Vec<Redirection>,
    #[case] promisc: Option<bool>,
) {
    let c = ok(&format!("eth3={value}"));
    let n = &c.network[0];
    assert_eq!(n.index, 3);
    assert_eq!(n.kind, kind);
    assert_eq!(n.mac, mac);
    assert_eq!(n.host_interface.as_deref(), name);
    assert_eq!(n.redirections, redirs);
    assert_eq!(n.promiscuous, promisc);
    assert_eq!(c.kernel_cmdline, "");
    // The value written back parses to the same device.
    let again = ok(&format!("eth3={}", n.to_value()));
    assert_eq!(&again.network[0], n);
}

#[test]
fn tuntap_keeps_host_ip() {
    let c = ok("eth0=tuntap,tap0,,192.168.37.1");
    assert_eq!(c.network[0].host_ip.as_deref(), Some("192.168.37.1"));
}

#[rstest]
#[case::bad_mac_short("eth0=slirp,00:11:22:33:44", "MAC address")]
#[case::bad_mac_dash("eth0=tuntap,tap0,00-11-22-33-44-55", "MAC address")]
#[case::bad_mac_hex("eth0=pcap-bridge,eth0,00:11:22:33:44:gg", "MAC address")]
#[case::bad_redir_proto("eth0=slirp,,icmp:1:2", "tcp|udp")]
#[case::bad_redir_port("eth0=slirp,,tcp:70000:22", "tcp|udp")]
#[case::bad_redir_zero("eth0=slirp,,tcp:0:22", "tcp|udp")]
#[case::bad_redir_fields("eth0=slirp,,tcp:22", "tcp|udp")]
#[case::bad_redir_count_overflow("eth0=slirp,,udp:65530:5000:10", "tcp|udp")]
#[case::bad_redir_empty_part("eth0=slirp,,tcp:1:2/", "tcp|udp")]
#[case::bad_kind("eth0=vde", "network type")]
#[case::bridge_no_name("eth0=pcap-bridge", "adapter name")]
#[case::bad_promisc("eth0=ndis-bridge,eth0,,maybe", "nopromisc")]
#[case::too_many("eth0=slirp,,tcp:1:2,extra", "at most 3")]
fn network_errors(#[case] text: &str, #[case] expected: &str) {
    let e = err(text);
    assert_eq!(e.line(), 1);
    let msg = e.to_string();
    assert!(msg.contains("/vm/test.conf:1"), "{msg}");
    assert!(msg.contains("eth0"), "{msg}");
    assert!(
        msg.contains(expected),
        "`{msg}` should mention `{expected}`"
    );
}

#[rstest]
#[case::cobd_range("cobd32=x", "out of range")]
#[case::eth_range("eth16=slirp", "out of range")]
#[case::exec_range("exec8=xterm", "out of range")]
#[case::ttys_range("ttys32=COM1", "out of range")]
#[case::cofs_range("cofs99=/tmp", "out of range")]
#[case::no_index("cobd=root.fs", "needs an index")]
#[case::empty_kernel("kernel=", "empty value")]
#[case::empty_quoted("cobd0=\"\"", "empty value")]
#[case::empty_eth("eth0=", "empty value")]
#[case::mem_word("mem=lots", "MiB")]
#[case::mem_zero("mem=0", "MiB")]
#[case::setcobd("setcobd=maybe", "`async` or `sync`")]
#[case::cocon("cocon=80", "COLSxROWS")]
#[case::cursor("cursor=200", "0..100")]
#[case::color("color=pink,black", "VGA colour")]
#[case::color_one("color=white", "VGA colour")]
#[case::alias_missing("hda1=:cobd3", "cobd3 is not defined")]
#[case::scsi("scsi0=disk,x.img", "not supported")]
#[case::quote("cobd0=\"open", "unterminated quote")]
#[case::control("ro\u{1}", "control character")]
#[case::exec_fields("exec0=a,b,c", "quote arguments")]
fn value_errors(#[case] text: &str, #[case] expected: &str) {
    let msg = err(text).to_string();
    assert!(msg.starts_with("/vm/test.conf:1: "), "{msg}");
    assert!(
        msg.contains(expected),
        "`{msg}` should mention `{expected}`"
    );
}

#[rstest]
#[case::cobd("cobd0=a\ncobd0=b", "cobd0")]
#[case::eth("eth1=slirp\n\neth1=tuntap", "eth1")]
#[case::cofs("cofs0=/a cofs0=/b", "cofs0")]
#[case::alias("cobd0=a\nhda1=:cobd0\nhda1=b", "hda1")]
#[case::alias_alloc_vs_cobd("hda1=x\ncobd0=y\ncobd0=z", "cobd0")]
fn double_defined(#[case] text: &str, #[case] key: &str) {
    let e = err(text);
    assert!(
        matches!(&e.kind, ErrorKind::DoubleDefined { key: k, .. } if k == key),
        "{e}"
    );
    assert!(e.to_string().contains("double defined"), "{e}");
    assert!(
        e.to_string().contains("first defined at /vm/test.conf:"),
        "{e}"
    );
}

#[test]
fn later_plain_keys_win() {
    let c = ok("mem=64 kernel=a\nmem=128\nkernel=b setcobd=async setcobd=sync");
    assert_eq!(c.mem_mib, Some(128));
    assert_eq!(c.kernel.raw, "b");
    assert_eq!(c.setcobd, CobdMode::Sync);
}

#[test]
fn aliases_name_and_allocate() {
    let c = ok("hda1=:cobd0\ncobd0=root.fs\nsdb=\"swap file\"\nhdc=cd.iso\ncobd1=other\nhda2=:cobd1 sdb1=:cobd0");
    let names: Vec<(u32, &str, Vec<&str>)> = c
        .block_devices
        .iter()
        .map(|d| {
            (
                d.index,
                d.path.raw.as_str(),
                d.aliases.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "root.fs", vec!["hda1", "sdb1"]),
            (1, "other", vec!["hda2"]),
            (2, "swap file", vec!["sdb"]),
            (3, "cd.iso", vec!["hdc"]),
        ]
    );
}

#[test]
fn windows_paths_and_quotes() {
    let c = ok(
        "kernel=C:\\coLinux\\vmlinux\r\ncobd0=\"C:\\My Files\\root fs.img\"\r\n\
         cofs0=\"D:\\Shared Docs\"\r\nexec0=\"C:\\Program Files\\Xming\\Xming.exe\",\":0 -clipboard -multiwindow\"\r\n\
         ttys0=COM1,\"BAUD=115200 PARITY=n DATA=8 STOP=1 dtr=on rts=on\"\r\n",
    );
    assert_eq!(c.kernel.raw, "C:\\coLinux\\vmlinux");
    assert_eq!(c.block_devices[0].path.raw, "C:\\My Files\\root fs.img");
    assert_eq!(c.cofs[0].path.raw, "D:\\Shared Docs");
    assert_eq!(c.exec[0].program.raw, "C:\\Program Files\\Xming\\Xming.exe");
    assert_eq!(
        c.exec[0].arguments.as_deref(),
        Some(":0 -clipboard -multiwindow")
    );
    assert_eq!(c.serial[0].device, "COM1");
    assert_eq!(
        c.serial[0].options.as_deref(),
        Some("BAUD=115200 PARITY=n DATA=8 STOP=1 dtr=on rts=on")
    );
}

#[test]
fn utf8_names_and_console_keys() {
    let c = ok("cobd0=/données/räcine.img cocon=120x50x2000 cursor=20 color=White,Blue");
    assert_eq!(c.block_devices[0].path.raw, "/données/räcine.img");
    assert_eq!(c.console.as_deref(), Some("120x50x2000"));
    assert_eq!(c.console_geometry().rows, 50);
    assert_eq!(c.cursor, Some(20));
    let colors = c.color.unwrap();
    assert_eq!(
        (colors.foreground.as_str(), colors.background.as_str()),
        ("white", "blue")
    );
}

#[test]
fn kernel_words_keep_order_and_quotes() {
    let c = ok("root=/dev/cobd0 ro\ninit=/sbin/init console=tty0 Kernel=x cobdx=1 -- single");
    assert_eq!(
        c.kernel_cmdline,
        "root=/dev/cobd0 ro init=/sbin/init console=tty0 Kernel=x cobdx=1 -- single"
    );
    let c = ok("dyndbg=\"file x.c +p\" quiet");
    assert_eq!(c.kernel_cmdline, "dyndbg=\"file x.c +p\" quiet");
}

#[test]
fn error_lines_count_comments_and_crlf() {
    let e = err("# c\r\nkernel=vmlinux\r\n\r\n# eth0=bad\r\nmem=64 eth0=slirp,xx\r\n");
    assert_eq!(e.line(), 5);
    assert!(e.to_string().contains("`eth0=slirp,xx`"), "{e}");
}

#[test]
fn invalid_utf8_names_line() {
    let e = colinux_conf::parse_bytes(
        b"kernel=a\nmem=1\ncobd0=\xff\xfe",
        Path::new("x.conf"),
        Path::new("/"),
    )
    .unwrap_err();
    assert_eq!(e.line(), 3);
    assert!(matches!(e.kind, ErrorKind::InvalidUtf8));
}

#[test]
fn xml_is_obsolete() {
    let e = err("<?xml version=\"1.0\"?>\n<colinux><block_device index=\"0\"/></colinux>");
    let msg = e.to_string();
    assert!(msg.contains("obsolete"), "{msg}");
    assert!(msg.contains("@file.conf"), "{msg}");
}

#[test]
fn command_line_words_and_files_mix() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conf-mix");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/base.conf"),
        "kernel=vmlinux mem=64 cobd0=root.fs root=/dev/cobd0\n",
    )
    .unwrap();
    std::fs::write(dir.join("sub/net.conf"), "eth0=slirp,,tcp:2222:22\n").unwrap();
    let c = parse_args(
        [
            "mem=32",
            "@sub/base.conf",
            "mem=96",
            "@sub/net.conf",
            "ro",
            "cobd1=swap.img",
        ],
        &dir,
    )
    .unwrap();
    assert_eq!(c.mem_mib, Some(96));
    assert_eq!(c.block_devices[0].path.resolve(), dir.join("sub/root.fs"));
    assert_eq!(c.block_devices[1].path.resolve(), dir.join("swap.img"));
    assert_eq!(c.kernel.resolve(), dir.join("sub/vmlinux"));
    assert_eq!(c.network[0].redirections.len(), 1);
    assert_eq!(c.kernel_cmdline, "root=/dev/cobd0 ro");

    let e = parse_args(["@sub/base.conf", "cobd0=again"], &dir).unwrap_err();
    assert_eq!(e.location.source, Source::CommandLine);
    assert_eq!(e.line(), 2);
    assert!(e.to_string().contains("base.conf:1"), "{e}");

    let e = parse_args(["kernel=x", "@missing.conf"], &dir).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("command line, word 2: cannot read configuration file `missing.conf`"),
        "{e}"
    );

    std::fs::write(dir.join("loop.conf"), "@loop.conf").unwrap();
    let e = parse_args(["@loop.conf"], &dir).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TooDeep { .. }), "{e}");
}

#[test]
fn kernel_cmdline_length_is_capped() {
    let long = "x".repeat(3000);
    let msg = err(&format!("ro {long}")).to_string();
    assert!(msg.contains("limit is 2047"), "{msg}");
}

#[test]
fn cofs_takes_a_read_only_flag() {
    let c = ok("kernel=vmlinux cofs0=/srv cofs1=/ro,ro cofs2=\"/a,b\",rw");
    let shares: Vec<_> = c
        .cofs
        .iter()
        .map(|s| (s.index, s.path.raw.as_str(), s.read_only))
        .collect();
    assert_eq!(
        shares,
        [(0, "/srv", false), (1, "/ro", true), (2, "/a,b", false)]
    );
    let msg = err("kernel=vmlinux cofs3=/srv,readonly").to_string();
    assert!(
        msg.contains("cofs3") && msg.contains("/srv,readonly"),
        "{msg}"
    );
    assert!(msg.contains("DIR[,ro]"), "{msg}");
}

#[test]
fn json_layout() {
    let c = ok("kernel=vmlinux initrd=initrd.gz mem=256 cobd0=root.fs hda1=:cobd0 cofs0=/srv \
                eth0=slirp,00:11:22:33:44:55,tcp:2222:22:2 ttys0=/dev/ttyS0 exec0=xterm cocon=80x25 ro");
    let json = c.to_json_pretty();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let order = [
        "kernel",
        "initrd",
        "mem_mib",
        "block_devices",
        "cofs",
        "network",
        "serial",
        "exec",
        "console",
        "kernel_cmdline",
        "setcobd",
        "cursor",
        "color",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| {
            json.find(&format!("\n  \"{k}\": "))
                .unwrap_or_else(|| panic!("{k} missing"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "field order {at:?}\n{json}"
    );
    assert_eq!(v.as_object().unwrap().len(), order.len());
    assert_eq!(
        v["block_devices"][0],
        serde_json::json!({"index": 0, "path": "root.fs", "aliases": ["hda1"]})
    );
    assert_eq!(
        v["cofs"][0],
        serde_json::json!({"index": 0, "path": "/srv", "read_only": false})
    );
    assert_eq!(v["network"][0]["kind"], "slirp");
    assert_eq!(v["network"][0]["mac"], "00:11:22:33:44:55");
    assert_eq!(v["network"][0]["host_interface"], serde_json::Value::Null);
    assert_eq!(
        v["network"][0]["redirections"][0],
        serde_json::json!({"protocol": "tcp", "host_port": 2222, "guest_port": 22, "count": 2})
    );
    assert_eq!(
        v["serial"][0],
        serde_json::json!({"index": 0, "device": "/dev/ttyS0", "options": null})
    );
    assert_eq!(
        v["exec"][0],
        serde_json::json!({"index": 0, "program": "xterm", "arguments": null})
    );
    assert_eq!(v["console"], "80x25");
    assert_eq!(v["mem_mib"], 256);
    assert_eq!(v["kernel_cmdline"], "ro");
    // And back.
    let back: Config = serde_json::from_value(v).unwrap();
    assert_eq!(back.to_conf_text(), c.to_conf_text());
}

#[test]
fn parse_file_takes_the_name_literally() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conf-literal");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("odd \"name\".conf");
    std::fs::write(&f, "cobd0=root.fs\n").unwrap();
    let c = colinux_conf::parse_file(&f).unwrap();
    assert_eq!(c.block_devices[0].path.resolve(), dir.join("root.fs"));
    assert_eq!(c.kernel.resolve(), dir.join("vmlinux"));
    let e = colinux_conf::parse_file(&dir.join("absent.conf")).unwrap_err();
    assert!(e.to_string().contains("absent.conf"), "{e}");
}

#[test]
fn validate_hand_built_models() {
    use colinux_conf::{BlockDeviceConf, ConfPath, NetDeviceConf};
    let mut c = Config {
        mem_mib: Some(128),
        kernel_cmdline: "root=/dev/cobd0 ro".into(),
        ..Config::default()
    };
    c.block_devices.push(BlockDeviceConf {
        index: 0,
        path: ConfPath::new("root fs.img", None),
        aliases: vec!["hda1".into()],
    });
    c.network.push(NetDeviceConf {
        index: 0,
        kind: NetKind::Slirp,
        mac: None,
        host_interface: None,
        redirections: vec![redir(Protocol::Tcp, 2222, 22, 1)],
        promiscuous: None,
        host_ip: None,
    });
    c.validate().unwrap();

    let mut bad = c.clone();
    bad.block_devices[0].index = 40;
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");

    let mut bad = c.clone();
    bad.kernel_cmdline = "mem=64".into();
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("does not survive"), "{e}");

    let mut bad = c;
    bad.network[0].kind = NetKind::PcapBridge;
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("adapter name"), "{e}");
}
