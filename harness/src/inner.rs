//! The inner QEMU reference monitor: the same devices the daemon gives, derived
//! from the same colinux.conf, as a `qemu-system-x86_64 -accel kvm` argument list
//! (run inside the host VM) plus the shell lines that must prepare the host VM
//! before it starts: network interfaces, and a `virtiofsd` per `cofsN=` share.

use crate::conf::{cofs_tag, path_of, Conf, NetKind};
use crate::qemu::shell_quote;
use std::path::Path;

/// Where the inner QEMU finds its firmware inside the host VM.
pub const FIRMWARE_DIR: &str = "/usr/share/colinux-fw";

/// An inner monitor invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerQemu {
    /// argv, starting with the program name.
    pub argv: Vec<String>,
    /// Shell lines to run in the host VM before each boot (TAP/bridge set-up,
    /// virtiofsd started; sourced after /etc/colinux/host-lib.sh).
    pub prepare: Vec<String>,
}

impl InnerQemu {
    /// The argument file the host VM's `inner_monitor` (host-lib.sh) reads:
    /// one argument a line.
    pub fn args_file(&self) -> String {
        self.argv.join("\n") + "\n"
    }

    /// Writes `qemu.args` into the work directory `work`, and `prepare.sh`
    /// when `with_prepare` (QEMU is the monitor) and there is something to
    /// prepare.
    pub fn write_work_files(&self, work: &Path, with_prepare: bool) -> std::io::Result<()> {
        std::fs::write(work.join("qemu.args"), self.args_file())?;
        if with_prepare && !self.prepare.is_empty() {
            std::fs::write(
                work.join("prepare.sh"),
                format!(". /etc/colinux/host-lib.sh\n{}\n", self.prepare.join("\n")),
            )?;
        }
        Ok(())
    }
}

/// The vhost-user socket of share `tag` inside the host VM.
pub fn cofs_socket(tag: &str) -> String {
    format!("/run/{tag}.sock")
}

/// Default MAC for ethN when the conf gives none (classic coLinux used 00:FF:..).
pub fn default_mac(index: u32) -> String {
    format!("00:ff:c0:11:00:{index:02x}")
}

/// Build the inner QEMU for `conf`; `read_only(path)` says whether a cobd file
/// is read-only (the host file is not writable).
pub fn inner_qemu(conf: &Conf, read_only: &dyn Fn(&str) -> bool) -> InnerQemu {
    let mut a: Vec<String> = Vec::new();
    let mut prepare = Vec::new();
    let mut p = |s: &str| a.push(s.to_string());
    for s in [
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-cpu",
        // The host's CPU without VMX/SVM, as colinux-daemon gives it.
        "host,-svm,-vmx",
        "-machine",
        "pc",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-L",
        FIRMWARE_DIR,
    ] {
        p(s);
    }
    let mem_mib = conf.mem_mib.unwrap_or(128);
    p("-m");
    p(&mem_mib.to_string());
    p("-kernel");
    p(&path_of(&conf.kernel));
    if let Some(i) = &conf.initrd {
        p("-initrd");
        p(&path_of(i));
    }
    let mut cmdline = conf.kernel_cmdline.clone();
    let aliases: Vec<String> = conf
        .block_devices
        .iter()
        .flat_map(|b| {
            b.aliases
                .iter()
                .map(move |n| format!("{n}:cobd{}", b.index))
        })
        .collect();
    if !aliases.is_empty() {
        cmdline.push_str(&format!(" colinux.alias={}", aliases.join(",")));
    }
    // The same NIC names colinux-daemon passes (the initramfs names by MAC).
    let nics: Vec<String> = conf
        .network
        .iter()
        .map(|n| {
            let mac = n
                .mac
                .map(|m| m.to_string())
                .unwrap_or_else(|| default_mac(n.index));
            format!("eth{}@{}", n.index, mac.to_ascii_lowercase())
        })
        .collect();
    if !nics.is_empty() {
        cmdline.push_str(&format!(" colinux.eth={}", nics.join(",")));
    }
    p("-append");
    p(cmdline.trim());
    for b in &conf.block_devices {
        let path = path_of(&b.path);
        let ro = if read_only(&path) { ",readonly=on" } else { "" };
        p("-drive");
        p(&format!(
            "file={},if=none,id=cobd{},format=raw,cache=writeback{ro}",
            path.replace(',', ",,"),
            b.index
        ));
        p("-device");
        p(&format!(
            "virtio-blk-pci,drive=cobd{0},serial=cobd{0}",
            b.index
        ));
    }
    for n in &conf.network {
        let id = format!("eth{}", n.index);
        let mac = n
            .mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| default_mac(n.index));
        let netdev = match n.kind {
            NetKind::Slirp => {
                let mut s = format!("user,id={id}");
                for r in &n.redirections {
                    for k in 0..r.count.max(1) {
                        s.push_str(&format!(
                            ",hostfwd={}::{}-:{}",
                            r.protocol.keyword(),
                            r.host_port as u32 + k as u32,
                            r.guest_port as u32 + k as u32
                        ));
                    }
                }
                s
            }
            NetKind::Tuntap => {
                let ifname = n
                    .host_interface
                    .clone()
                    .unwrap_or_else(|| format!("tap{}", n.index));
                prepare.push(format!(
                    "ip link show {ifname} >/dev/null 2>&1 || ip tuntap add dev {ifname} mode tap; ip link set {ifname} up"
                ));
                format!("tap,id={id},ifname={ifname},script=no,downscript=no")
            }
            NetKind::PcapBridge | NetKind::NdisBridge => {
                // tap + bridge: a TAP joins a bridge that holds the named interface.
                let iface = n
                    .host_interface
                    .clone()
                    .unwrap_or_else(|| "eth0".to_string());
                let tap = format!("cbr{}", n.index);
                prepare.push(format!("colinux_bridge_tap {iface} {tap}"));
                format!("tap,id={id},ifname={tap},script=no,downscript=no")
            }
        };
        p("-netdev");
        p(&netdev);
        p("-device");
        p(&format!("virtio-net-pci,netdev={id},mac={mac},romfile="));
    }
    if !conf.cofs.is_empty() {
        // vhost-user-fs: virtiofsd maps the guest RAM, so it must be a shared
        // memfd (only then: other guests keep QEMU's own RAM).
        p("-object");
        p(&format!(
            "memory-backend-memfd,id=mem,size={mem_mib}M,share=on"
        ));
        p("-machine");
        p("memory-backend=mem");
    }
    for s in &conf.cofs {
        let tag = cofs_tag(s);
        let sock = cofs_socket(&tag);
        let mut daemon = vec![
            "virtiofsd".to_string(),
            format!("--socket-path={sock}"),
            format!("--shared-dir={}", path_of(&s.path)),
            "--sandbox=chroot".to_string(),
        ];
        if s.read_only {
            daemon.push("--readonly".to_string());
        }
        // host-lib.sh's colinux_virtiofsd: stops a stale one of an earlier
        // boot, starts this one in the background, waits for its socket.
        let words: Vec<String> = daemon.iter().map(|w| shell_quote(w)).collect();
        prepare.push(format!("colinux_virtiofsd {tag} {}", words.join(" ")));
        p("-chardev");
        p(&format!("socket,id={tag},path={sock}"));
        p("-device");
        p(&format!("vhost-user-fs-pci,chardev={tag},tag={tag}"));
    }
    InnerQemu { argv: a, prepare }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse;

    #[test]
    fn cobd_and_nics_map_to_virtio() {
        let c = parse(
            "kernel=/images/vmlinuz mem=96 cobd0=/work/a.img cobd1=/work/b.img hdb=:cobd1 \
             eth0=slirp,,tcp:8080:80:2 eth1=tuntap,tap7,00:ff:00:00:00:07 console=ttyS0",
        )
        .unwrap();
        let q = inner_qemu(&c, &|p| p.ends_with("a.img"));
        let s = q.argv.join(" ");
        assert!(
            s.contains("file=/work/a.img,if=none,id=cobd0,format=raw,cache=writeback,readonly=on"),
            "{s}"
        );
        assert!(
            s.contains("file=/work/b.img,if=none,id=cobd1,format=raw,cache=writeback -device"),
            "{s}"
        );
        assert!(s.contains("virtio-blk-pci,drive=cobd1,serial=cobd1"));
        assert!(
            s.contains("hostfwd=tcp::8080-:80,hostfwd=tcp::8081-:81"),
            "{s}"
        );
        assert!(s.contains("mac=00:ff:c0:11:00:00"));
        assert!(s.contains("tap,id=eth1,ifname=tap7"));
        assert!(
            s.contains(
                "console=ttyS0 colinux.alias=hdb:cobd1 \
                 colinux.eth=eth0@00:ff:c0:11:00:00,eth1@00:ff:00:00:00:07"
            ),
            "{s}"
        );
        assert!(s.contains("-m 96"));
        assert_eq!(q.prepare.len(), 1);
        // No share: QEMU's own RAM, as before.
        assert!(!s.contains("memory-backend"), "{s}");
        assert!(!s.contains("vhost-user"), "{s}");
    }

    #[test]
    fn cofs_shares_map_to_vhost_user_fs_with_virtiofsd() {
        let c = parse(
            "kernel=/images/vmlinuz mem=96 cofs0=/work/share cofs1=\"/work/my share\",ro \
             console=ttyS0",
        )
        .unwrap();
        let q = inner_qemu(&c, &|_| false);
        let s = q.argv.join(" ");
        assert!(
            s.contains(
                "-object memory-backend-memfd,id=mem,size=96M,share=on -machine memory-backend=mem"
            ),
            "{s}"
        );
        for n in [0, 1] {
            assert!(
                s.contains(&format!(
                    "-chardev socket,id=cofs{n},path=/run/cofs{n}.sock \
                     -device vhost-user-fs-pci,chardev=cofs{n},tag=cofs{n}"
                )),
                "{s}"
            );
        }
        assert_eq!(
            q.prepare,
            vec![
                "colinux_virtiofsd cofs0 virtiofsd --socket-path=/run/cofs0.sock \
                 --shared-dir=/work/share --sandbox=chroot"
                    .to_string(),
                "colinux_virtiofsd cofs1 virtiofsd --socket-path=/run/cofs1.sock \
                 '--shared-dir=/work/my share' --sandbox=chroot --readonly"
                    .to_string(),
            ]
        );
        // The memory backend comes once, whatever the number of shares.
        assert_eq!(s.matches("memory-backend-memfd").count(), 1);
        assert!(s.contains("-append console=ttyS0"), "{s}");
    }
}
