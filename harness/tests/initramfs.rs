//! The guest initramfs's decisions (vm-images/guest/boot-lib.sh) run under
//! busybox sh on a fake sysfs: root= forms, ro/rw, cobd alias names, the udev
//! rules and NIC renames it hands to the running system, and the init it runs.

use proptest::prelude::*;
use rstest::rstest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fake machine: sysfs with two cobd disks and two NICs, an empty /dev.
struct Fake {
    base: PathBuf,
}

impl Fake {
    fn new() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "colinux-initramfs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let f = Self { base };
        for (k, serial) in [("vda", "cobd0"), ("vdb", "cobd1"), ("vdc", "work")] {
            f.write(&format!("sys/block/{k}/serial"), serial);
            f.write(&format!("sys/block/{k}/dev"), "254:0");
            std::fs::create_dir_all(f.base.join(format!("sys/class/block/{k}"))).unwrap();
        }
        std::fs::create_dir_all(f.base.join("sys/class/block/vdb1")).unwrap();
        f.write("sys/class/net/enp0s3/address", "00:ff:c0:11:00:01");
        f.write("sys/class/net/enp0s4/address", "00:ff:c0:11:00:00");
        f.write("sys/class/net/lo/address", "00:00:00:00:00:00");
        std::fs::create_dir_all(f.base.join("dev")).unwrap();
        std::fs::create_dir_all(f.base.join("tmp")).unwrap();
        f
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.base.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{text}\n")).unwrap();
    }

    fn dev(&self) -> String {
        self.base.join("dev").display().to_string()
    }

    /// Runs `script` after sourcing boot-lib.sh; its stdout, trimmed.
    fn sh(&self, script: &str) -> String {
        let lib = colinux_harness::paths::recipes_dir().join("guest/boot-lib.sh");
        let out = Command::new(busybox())
            .args(["sh", "-c"])
            .arg(format!(". '{}'\n{script}", lib.display()))
            .env("SYS", self.base.join("sys"))
            .env("DEV", self.base.join("dev"))
            .env("TMPDIR", self.base.join("tmp"))
            .output()
            .expect("running busybox sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// busybox, which the images are built from (deps installs busybox-static).
fn busybox() -> PathBuf {
    ["/usr/bin/busybox", "/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox is needed to build the images (apt-get install busybox-static)")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[rstest]
#[case("", "ro")]
#[case("root=/dev/cobd0", "ro")]
#[case("root=/dev/cobd0 rw", "rw")]
#[case("ro rw", "rw")]
#[case("rw ro", "ro")]
#[case("rw quiet -- ro", "rw")]
#[case("ro -- rw", "ro")]
fn root_is_read_only_unless_rw_last(#[case] cmdline: &str, #[case] want: &str) {
    let f = Fake::new();
    assert_eq!(f.sh(&format!("root_mode {}", quote(cmdline))), want);
}

#[rstest]
#[case("rw rootflags=data=journal,noatime", "rw,data=journal,noatime")]
#[case("rootflags=a rootflags=b", "ro,b")]
#[case("ro", "ro")]
fn mount_options_are_mode_then_rootflags(#[case] cmdline: &str, #[case] want: &str) {
    let f = Fake::new();
    assert_eq!(f.sh(&format!("mount_options {}", quote(cmdline))), want);
}

#[rstest]
#[case("root=/dev/vda root=/dev/cobd1", "root", "/dev/cobd1")]
#[case("init=/bin/sh -- init=/x", "init", "/bin/sh")]
#[case("rootdelay=3", "rootfstype", "")]
#[case(
    "colinux.eth=eth0@00:ff:c0:11:00:00",
    "colinux.eth",
    "eth0@00:ff:c0:11:00:00"
)]
fn kernel_arguments_last_one_wins(#[case] cmdline: &str, #[case] name: &str, #[case] want: &str) {
    let f = Fake::new();
    assert_eq!(
        f.sh(&format!("cmdline_arg {name} {}", quote(cmdline))),
        want
    );
}

#[test]
fn flags_before_the_double_dash_only() {
    let f = Fake::new();
    assert_eq!(
        f.sh("cmdline_flag rootwait 'a rootwait' && echo y || echo n"),
        "y"
    );
    assert_eq!(
        f.sh("cmdline_flag rootwait 'a -- rootwait' && echo y || echo n"),
        "n"
    );
    assert_eq!(
        f.sh("cmdline_flag rootwait 'rootwaitx' && echo y || echo n"),
        "n"
    );
}

#[rstest]
#[case("/dev/cobd0", "", Some("vda"))]
#[case("cobd1", "", Some("vdb"))]
#[case("/dev/cobd7", "", None)]
#[case("/dev/hda1", "hda1:cobd0,hdb:cobd1", Some("vda"))]
#[case("/dev/hdb", "hda1:cobd0,hdb:cobd1", Some("vdb"))]
#[case("/dev/hdc", "hda1:cobd0,hdb:cobd1", None)]
#[case("/dev/vdb", "", Some("vdb"))]
#[case("/dev/vdb1", "", Some("vdb1"))]
#[case("/dev/vdz", "", None)]
fn root_forms_resolve_to_the_kernel_device(
    #[case] root: &str,
    #[case] aliases: &str,
    #[case] want: Option<&str>,
) {
    let f = Fake::new();
    let got = f.sh(&format!("resolve_root {} {}", quote(root), quote(aliases)));
    let want = want.map(|k| format!("{}/{k}", f.dev())).unwrap_or_default();
    assert_eq!(got, want, "root={root} aliases={aliases}");
}

#[rstest]
#[case("LABEL=colinux-root", "/dev/vda")]
#[case("UUID=5a1c0c1e-0000-4000-8000-000000000001", "/dev/vdb")]
#[case("PARTUUID=0badcafe-01", "/dev/vdb1")]
#[case("LABEL=nothing", "")]
fn tagged_roots_are_found_by_blkid(#[case] root: &str, #[case] want: &str) {
    let f = Fake::new();
    // A stand-in for `blkid -l -o device -t TOKEN` that knows three tokens,
    // and fails (as blkid does) for any other.
    let fake = f.base.join("blkid");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1 $2 $3 $4\" = '-l -o device -t' ] || exit 4\ncase \"$5\" in\n\
         LABEL=colinux-root) echo /dev/vda ;;\n\
         UUID=5a1c0c1e-0000-4000-8000-000000000001) echo /dev/vdb ;;\n\
         PARTUUID=0badcafe-01) echo /dev/vdb1 ;;\n*) exit 2 ;;\nesac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let got = f.sh(&format!(
        "BLKID={} resolve_root {} ''",
        quote(&fake.display().to_string()),
        quote(root)
    ));
    assert_eq!(got, want);
}

#[test]
fn aliases_stay_inside_dev_and_name_cobd_disks_only() {
    let f = Fake::new();
    assert_eq!(
        f.sh("alias_pairs 'hda1:cobd0,../etc/x:cobd0,a/b:cobd1,.hidden:cobd1,sdb:vda,hdb:cobd12'"),
        "hda1 cobd0\nhdb cobd12"
    );
}

#[test]
fn cobd_links_name_disks_and_aliases() {
    let f = Fake::new();
    f.sh("cobd_links 'hda1:cobd0,hdb:cobd1,hdc:cobd5'");
    let link = |n: &str| {
        std::fs::read_link(Path::new(&f.dev()).join(n))
            .ok()
            .map(|p| p.display().to_string())
    };
    assert_eq!(link("cobd0").as_deref(), Some("vda"));
    assert_eq!(link("cobd1").as_deref(), Some("vdb"));
    assert_eq!(link("hda1").as_deref(), Some("vda"));
    assert_eq!(link("hdb").as_deref(), Some("vdb"));
    assert_eq!(link("hdc"), None, "cobd5 does not exist");
    assert_eq!(link("work"), None, "only cobdN serials are named");
    // A second run (rootwait loops) keeps what is there.
    f.sh("cobd_links 'hda1:cobd0'");
    assert_eq!(link("hda1").as_deref(), Some("vda"));
}

#[test]
fn udev_rules_name_disks_aliases_and_nics() {
    let f = Fake::new();
    let rules = f.sh("udev_rules 'hda1:cobd0' 'eth0@00:FF:C0:11:00:00,eth1@00:ff:c0:11:00:01,wlan0@00:11:22:33:44:55'");
    let lines: Vec<&str> = rules.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            r#"SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", KERNEL=="vd*", ATTR{serial}=="cobd[0-9]*", SYMLINK+="$attr{serial}""#,
            r#"SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", KERNEL=="vd*", ATTR{serial}=="cobd0", SYMLINK+="hda1""#,
            r#"SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:ff:c0:11:00:00", NAME="eth0""#,
            r#"SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:ff:c0:11:00:01", NAME="eth1""#,
        ]
    );
}

#[test]
fn nics_are_renamed_through_temporary_names() {
    let f = Fake::new();
    // enp0s4 has eth0's MAC, enp0s3 eth1's.
    assert_eq!(
        f.sh("nic_renames 'eth0@00:ff:c0:11:00:00,eth1@00:ff:c0:11:00:01'"),
        "enp0s4 cltmp0\nenp0s3 cltmp1\ncltmp0 eth0\ncltmp1 eth1"
    );
    // The kernel's eth0/eth1 the wrong way round: a swap, never a collision.
    std::fs::rename(
        f.base.join("sys/class/net/enp0s3"),
        f.base.join("sys/class/net/eth0"),
    )
    .unwrap();
    std::fs::rename(
        f.base.join("sys/class/net/enp0s4"),
        f.base.join("sys/class/net/eth1"),
    )
    .unwrap();
    assert_eq!(
        f.sh("nic_renames 'eth0@00:ff:c0:11:00:00,eth1@00:ff:c0:11:00:01'"),
        "eth1 cltmp0\neth0 cltmp1\ncltmp0 eth0\ncltmp1 eth1"
    );
    // Already right, or a MAC no NIC has: nothing to do.
    assert_eq!(f.sh("nic_renames 'eth1@00:ff:c0:11:00:00'"), "");
    assert_eq!(f.sh("nic_renames 'eth3@02:00:00:00:00:09'"), "");
}

#[test]
fn init_is_init_or_the_kernels_list() {
    let f = Fake::new();
    let root = f.base.join("root");
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let r = quote(&root.display().to_string());
    assert_eq!(f.sh(&format!("init_path {r} ''")), "", "no init at all");
    f.write("root/bin/sh", "#!/bin/sh");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("bin/sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(f.sh(&format!("init_path {r} ''")), "/bin/sh");
    // Distributions' /sbin/init is an absolute symlink (to systemd): it counts.
    std::os::unix::fs::symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
    assert_eq!(f.sh(&format!("init_path {r} ''")), "/sbin/init");
    assert_eq!(
        f.sh(&format!("init_path {r} 'init=/bin/bash ro'")),
        "/bin/bash"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever the words, the mode is the last of ro/rw before `--`, ro by default.
    #[test]
    fn mode_is_the_last_ro_or_rw(words in proptest::collection::vec(
        prop_oneof![Just("ro"), Just("rw"), Just("quiet"), Just("--"), Just("root=/dev/cobd0")], 0..8)) {
        let f = Fake::new();
        let cmdline = words.join(" ");
        let kernel: Vec<&str> = words.iter().take_while(|w| **w != "--").copied().collect();
        let want = kernel.iter().rev().find(|w| **w == "ro" || **w == "rw").copied().unwrap_or("ro");
        prop_assert_eq!(f.sh(&format!("root_mode {}", quote(&cmdline))), want);
    }
}
