//! Stage 2, customizing the tree: fstab, hostname and hosts, network
//! interfaces, the consoles' gettys (gettys.rs), classic `eth0` naming,
//! root's authorized keys and password.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::super::ImageError;
use super::files::{symlink, write_file};
use super::gettys::setup_gettys;
use super::options::BootstrapOptions;
use super::process::run_tool;
use super::scratch::Scratch;

/// `/etc/fstab` in the classic coLinux shape: root on cobd0 and, with
/// `swap`, swap on cobd1.
pub fn fstab_text(swap: bool) -> String {
    let mut t = String::from(
        "# /etc/fstab: static file system information.\n\
         # <file system> <mount point> <type> <options> <dump> <pass>\n\
         /dev/cobd0 / ext4 errors=remount-ro 0 1\n",
    );
    if swap {
        t.push_str("/dev/cobd1 none swap sw 0 0\n");
    }
    t
}

/// `/etc/network/interfaces`: loopback, and eth0 configured by DHCP (slirp,
/// or the LAN's server with TAP and bridges).
pub fn interfaces_text() -> String {
    "# /etc/network/interfaces (made by colinux-image bootstrap)\n\
     source /etc/network/interfaces.d/*\n\
     \n\
     auto lo\n\
     iface lo inet loopback\n\
     \n\
     auto eth0\n\
     iface eth0 inet dhcp\n"
        .to_string()
}

/// `/etc/hosts` with the 127.0.1.1 line Debian's installer writes for the
/// host name.
pub fn hosts_text(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n\
         127.0.1.1\t{hostname}\n\
         \n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n"
    )
}

/// `/usr/sbin/mount.cofs`: the classic fstab line `cofs0 /mnt/c cofs
/// defaults 0 0` (and `mount -t cofs cofs0 /mnt/c`) mounts the daemon's
/// virtio-fs share tagged `cofs0`. coLinux's own cofs options `uid=`, `gid=`,
/// `dmask=` and `fmask=` have no virtio-fs meaning: the helper drops them
/// with one line naming them (files keep their host owners and modes).
pub fn mount_cofs_text() -> String {
    r#"#!/bin/sh
# mount.cofs (colinux-image): classic coLinux cofs mounts over virtio-fs.
# mount(8) runs it as: mount.cofs SPEC DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]
set -u
if [ $# -lt 2 ]; then
    echo "usage: mount.cofs cofsN DIR [-o OPTIONS]" >&2
    exit 1
fi
spec=$1 dir=$2
shift 2
opts= flags= dropped=
while [ $# -gt 0 ]; do
    case "$1" in
    -o) opts=$2; shift ;;
    -t|-N) shift ;;
    -*) flags="$flags $1" ;;
    esac
    shift
done
# The tag: cofs0, or the classic "cofs0/" and "cofs0:" forms.
tag=${spec%%[/:]*}
kept=
for o in $(echo "$opts" | tr ',' ' '); do
    case "$o" in
    uid=*|gid=*|dmask=*|fmask=*) dropped="$dropped,$o" ;;
    *) kept="$kept,$o" ;;
    esac
done
kept=${kept#,}
if [ -n "$dropped" ]; then
    echo "mount.cofs: ${dropped#,}: not applied (virtio-fs shows host owners and modes)" >&2
fi
modprobe virtiofs 2>/dev/null
# The share's driver may still be probing right after boot: retry briefly.
i=0
while :; do
    if mount -i -t virtiofs $flags ${kept:+-o "$kept"} "$tag" "$dir"; then
        exit 0
    fi
    i=$((i + 1))
    [ $i -ge 10 ] && break
    sleep 0.5
done
echo "mount.cofs: cannot mount $tag on $dir: is cofs${tag#cofs} set in the daemon's configuration?" >&2
exit 32
"#
    .to_string()
}

/// A public key file's text, checked: every key line has a type and a key,
/// and no private key slipped in.
pub(super) fn read_public_keys(path: &Path) -> Result<String, ImageError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImageError::io(path, e))?;
    let bad = |why: &str| ImageError::BadArgument {
        what: "--authorized-key".into(),
        value: path.display().to_string(),
        why: why.into(),
    };
    if text.contains("PRIVATE KEY") {
        return Err(bad("this is a private key; give the .pub file"));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if keys.is_empty() {
        return Err(bad("no public key in it"));
    }
    if keys.iter().any(|l| l.split_whitespace().count() < 2) {
        return Err(bad(
            "not an OpenSSH public key (`ssh-ed25519 AAAA... comment`)",
        ));
    }
    Ok(keys.iter().map(|k| format!("{k}\n")).collect())
}

/// Stage 2, the files: fstab, hostname, hosts, interfaces, the consoles'
/// gettys for the image's init, classic `eth0` naming and root's
/// authorized_keys.
pub(super) fn write_config(o: &BootstrapOptions, root: &Path) -> Result<(), ImageError> {
    write_file(
        &root.join("etc/fstab"),
        &fstab_text(o.swap.is_some()),
        0o644,
    )?;
    write_file(
        &root.join("etc/hostname"),
        &format!("{}\n", o.hostname),
        0o644,
    )?;
    write_file(&root.join("etc/hosts"), &hosts_text(&o.hostname), 0o644)?;
    write_file(
        &root.join("etc/network/interfaces"),
        &interfaces_text(),
        0o644,
    )?;
    write_file(&root.join("usr/sbin/mount.cofs"), &mount_cofs_text(), 0o755)?;
    // mmdebstrap copied this host's resolv.conf; dhclient writes the guest's.
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));
    setup_gettys(o.init, root)?;
    // Keep the kernel's eth0 (udev would rename it enp0s3 and `auto eth0`
    // would find nothing). udev's net_setup_link reads this directory
    // whatever the init, so it holds with sysvinit too.
    symlink(
        "/dev/null",
        &root.join("etc/systemd/network/99-default.link"),
    )?;
    if !o.authorized_keys.is_empty() {
        let ssh = root.join("root/.ssh");
        std::fs::create_dir_all(&ssh).map_err(|e| ImageError::io(&ssh, e))?;
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io(&ssh, e))?;
        let mut keys = String::new();
        for k in &o.authorized_keys {
            keys.push_str(&read_public_keys(k)?);
        }
        write_file(&ssh.join("authorized_keys"), &keys, 0o600)?;
    }
    Ok(())
}

/// Stage 2, root's password: `chpasswd` in the tree, or empty (`passwd -d`)
/// so the console login needs none (sshd still refuses empty passwords).
pub(super) fn set_root_password(o: &BootstrapOptions, s: &Scratch) -> Result<(), ImageError> {
    let root = s.root();
    let log = s.dir.join("passwd.log");
    match &o.root_password {
        Some(pw) => {
            let args = [root.as_os_str(), OsStr::new("chpasswd")];
            run_tool(
                "chroot",
                &args,
                Some(&log),
                Some(&format!("root:{pw}\n")),
                &[],
            )
        }
        None => {
            let args = [
                root.as_os_str(),
                OsStr::new("passwd"),
                OsStr::new("-d"),
                OsStr::new("root"),
            ];
            run_tool("chroot", &args, Some(&log), None, &[])
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::image::bootstrap::SwapSpec;

    #[test]
    fn fstab_has_the_classic_lines() {
        let no_swap = fstab_text(false);
        let lines: Vec<&str> = no_swap.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["/dev/cobd0 / ext4 errors=remount-ro 0 1"]);
        let with = fstab_text(true);
        let lines: Vec<&str> = with.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "/dev/cobd0 / ext4 errors=remount-ro 0 1",
                "/dev/cobd1 none swap sw 0 0"
            ]
        );
    }

    #[test]
    fn interfaces_bring_up_lo_and_eth0_by_dhcp() {
        let t = interfaces_text();
        for want in [
            "auto lo",
            "iface lo inet loopback",
            "auto eth0",
            "iface eth0 inet dhcp",
        ] {
            assert!(t.lines().any(|l| l == want), "{want} missing in\n{t}");
        }
    }

    #[test]
    fn hosts_names_the_host_on_127_0_1_1() {
        let t = hosts_text("box");
        assert!(t.lines().any(|l| l == "127.0.1.1\tbox"));
        assert!(t.lines().any(|l| l == "127.0.0.1\tlocalhost"));
    }

    /// A tree shaped like Debian 12's (merged /usr) in a fresh scratch dir.
    pub(in crate::image::bootstrap) fn fake_tree(name: &str) -> Scratch {
        let base =
            std::env::temp_dir().join(format!("bootstrap-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let s = Scratch::new(&base.join("debian.img")).unwrap();
        let root = s.root();
        std::fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("usr/lib/systemd/system/serial-getty@.service"),
            "",
        )
        .unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        s
    }

    /// Runs mount.cofs with fake `mount`/`modprobe`/`sleep` that record
    /// their arguments; `mount_ok` says whether the fake mount succeeds.
    fn run_mount_cofs(args: &[&str], mount_ok: bool) -> (i32, String, String) {
        let dir = std::env::temp_dir().join(format!(
            "mount-cofs-{}-{}",
            std::process::id(),
            u8::from(mount_ok)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("calls");
        let fake = |name: &str, status: u8| {
            let body = format!(
                "#!/bin/sh\necho \"{name} $*\" >> {}\nexit {status}\n",
                log.display()
            );
            write_file(&dir.join(name), &body, 0o755).unwrap();
        };
        fake("mount", if mount_ok { 0 } else { 32 });
        fake("modprobe", 0);
        fake("sleep", 0);
        write_file(&dir.join("mount.cofs"), &mount_cofs_text(), 0o755).unwrap();
        let out = std::process::Command::new("sh")
            .arg(dir.join("mount.cofs"))
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_dir_all(&dir).unwrap();
        (
            out.status.code().unwrap_or(-1),
            calls,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn mount_cofs_mounts_the_tag_over_virtiofs() {
        let (code, calls, err) = run_mount_cofs(
            &["cofs0", "/mnt/c", "-o", "rw,uid=1000,noatime,fmask=022"],
            true,
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            calls,
            "modprobe virtiofs\nmount -i -t virtiofs -o rw,noatime cofs0 /mnt/c\n"
        );
        assert!(err.contains("uid=1000,fmask=022: not applied"), "{err}");
        let (code, calls, err) = run_mount_cofs(&["cofs3/", "/mnt/d", "-n"], true);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(
            calls.ends_with("mount -i -t virtiofs -n cofs3 /mnt/d\n"),
            "{calls}"
        );
    }

    #[test]
    fn mount_cofs_fails_with_a_message_after_its_retries() {
        let (code, calls, err) = run_mount_cofs(&["cofs9", "/mnt/x"], false);
        assert_eq!(code, 32);
        assert_eq!(calls.matches("mount -i").count(), 10, "{calls}");
        assert!(err.contains("cannot mount cofs9 on /mnt/x"), "{err}");
        let (code, _, err) = run_mount_cofs(&["cofs9"], true);
        assert_eq!(code, 1);
        assert!(err.contains("usage"), "{err}");
    }

    #[test]
    fn config_files_land_in_the_tree() {
        let s = fake_tree("config");
        let root = s.root();
        let key = s.dir.join("id.pub");
        std::fs::write(&key, "ssh-ed25519 AAAAC3Nza test@host\n").unwrap();
        let mut o = BootstrapOptions::new(s.dir.join("x.img"), 1 << 30);
        o.hostname = "box".into();
        o.authorized_keys = vec![key];
        o.swap = Some(SwapSpec {
            path: "swap.img".into(),
            size: 1 << 26,
        });
        write_config(&o, &root).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("etc/fstab"), fstab_text(true));
        assert_eq!(read("etc/hostname"), "box\n");
        assert!(read("etc/hosts").contains("127.0.1.1\tbox"));
        assert_eq!(read("etc/network/interfaces"), interfaces_text());
        assert!(!root.join("etc/resolv.conf").exists());
        assert_eq!(read("usr/sbin/mount.cofs"), mount_cofs_text());
        let getty = root.join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service");
        assert_eq!(
            std::fs::read_link(getty).unwrap(),
            Path::new("/lib/systemd/system/serial-getty@.service")
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/systemd/network/99-default.link")).unwrap(),
            Path::new("/dev/null")
        );
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("root/.ssh"), 0o700);
        assert_eq!(mode("usr/sbin/mount.cofs"), 0o755);
        assert_eq!(mode("root/.ssh/authorized_keys"), 0o600);
        assert_eq!(
            read("root/.ssh/authorized_keys"),
            "ssh-ed25519 AAAAC3Nza test@host\n"
        );
        let base = s.dir.parent().unwrap().to_path_buf();
        drop(s);
        std::fs::remove_dir_all(base).unwrap();
    }
}
