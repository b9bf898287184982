//! `cargo xtask images`: the kernel, guest initramfs, rootfs.ext4 and host
//! initramfs, built into the images directory and rebuilt only when the hash
//! of their inputs changes. A manifest.json beside them records versions.

pub mod distro;
pub mod extras;
pub mod kernel;
pub mod stage;
pub mod systems;
pub mod virtiofsd;

use crate::paths;
use crate::util::{sha256_file, InputHash};
use anyhow::{Context, Result};
use kernel::{KernelPackage, KernelTree};
use stage::{which, Stage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Guest modules, in load order (virtio block and net; fuse and virtiofs for
/// `cofsN=` shares, `mount -t virtiofs cofsN DIR`).
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "fuse",
    "virtiofs",
];

/// Host-VM modules loaded at boot (plus the guest set, for its work disk).
pub const HOST_MODULES: &[&str] = &["kvm", "tun", "veth", "bridge", "macvlan", "macvtap"];

/// Host-VM modules copied but loaded by the host init only if the CPU has them.
pub const HOST_OPTIONAL_MODULES: &[&str] = &["kvm-amd", "kvm-intel"];

/// Files the inner QEMU may ask for (-L directory in the host VM).
pub const INNER_FIRMWARE: &[&str] = &[
    "bios-256k.bin",
    "linuxboot_dma.bin",
    "linuxboot.bin",
    "kvmvapic.bin",
    "efi-virtio.rom",
];
const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/qemu",
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
];

/// One built image in the manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageEntry {
    /// File name inside the images directory.
    pub file: String,
    /// Hash of the inputs it was built from (the cache key).
    pub inputs: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// manifest.json beside the images.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The exact kernel package.
    pub kernel: KernelPackage,
    /// Built images by name (kernel, guest-initrd, rootfs, host-initrd).
    pub images: BTreeMap<String, ImageEntry>,
    /// The colinux-daemon binary inside the host initramfs, if it built.
    pub daemon: Option<DaemonEntry>,
}

/// The daemon binary packed into the host initramfs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DaemonEntry {
    /// Where it was built.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// What `--capabilities` said when the image was built.
    pub capabilities: Vec<String>,
}

/// The built images.
#[derive(Debug, Clone)]
pub struct Images {
    /// The images directory.
    pub dir: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
}

impl Images {
    /// Load the manifest of already built images.
    pub fn load() -> Result<Self> {
        let dir = paths::images_dir();
        let m = dir.join("manifest.json");
        let text = std::fs::read_to_string(&m)
            .with_context(|| format!("{} missing: run `cargo xtask images` first", m.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", m.display()))?;
        for e in manifest.images.values() {
            let p = dir.join(&e.file);
            anyhow::ensure!(
                p.exists(),
                "{} missing: run `cargo xtask images`",
                p.display()
            );
        }
        Ok(Self { dir, manifest })
    }
    /// Path of a built image by name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(
            self.manifest
                .images
                .get(name)
                .map(|e| e.file.as_str())
                .unwrap_or(name),
        )
    }
}

/// Options for building images.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The colinux-daemon binary to pack (None: the host VM has no daemon).
    pub daemon: Option<PathBuf>,
}

fn step(n: usize, what: &str) {
    eprintln!("images [{n}/5] {what}");
}

fn cached(old: Option<&Manifest>, dir: &Path, name: &str, inputs: &str) -> bool {
    old.and_then(|m| m.images.get(name))
        .is_some_and(|e| e.inputs == inputs && dir.join(&e.file).exists())
}

fn entry(dir: &Path, file: &str, inputs: String) -> Result<ImageEntry> {
    Ok(ImageEntry {
        file: file.to_string(),
        inputs,
        bytes: std::fs::metadata(dir.join(file))?.len(),
    })
}

/// Build (or reuse) every image; prints progress to stderr.
pub fn build(opts: &BuildOptions) -> Result<Images> {
    let t0 = Instant::now();
    let dir = paths::images_dir();
    std::fs::create_dir_all(&dir)?;
    // Two xtask runs at once (ci-boot for each monitor, say) would rebuild the
    // same files under each other: the second waits here for the first.
    let lock_path = dir.join(".build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "images: waiting for another build ({})",
            lock_path.display()
        );
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    let old: Option<Manifest> = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let recipes = paths::recipes_dir();
    let mut images = BTreeMap::new();

    // 1. kernel
    let kroot = dir.join("kernel-root");
    let pkg = match kernel::resolve() {
        Ok(p) => p,
        Err(e) => match &old {
            Some(m) if kroot.exists() => {
                eprintln!(
                    "images: cannot resolve kernel ({e:#}); keeping {}",
                    m.kernel.package
                );
                m.kernel.clone()
            }
            _ => return Err(e),
        },
    };
    let kin = InputHash::default()
        .text("package", &pkg.package)
        .text("version", &pkg.version)
        .finish();
    let tree = KernelTree {
        root: kroot.clone(),
        release: pkg.release.clone(),
    };
    if cached(old.as_ref(), &dir, "kernel", &kin) && tree.vmlinuz().exists() {
        step(
            1,
            &format!("kernel {} {} (cached)", pkg.package, pkg.version),
        );
    } else {
        step(
            1,
            &format!(
                "kernel {} {}: apt-get download + dpkg-deb -x",
                pkg.package, pkg.version
            ),
        );
        kernel::fetch(&pkg, &dir.join("kernel-dl"), &kroot)?;
        std::fs::copy(tree.vmlinuz(), dir.join("vmlinuz"))?;
    }
    images.insert("kernel".to_string(), entry(&dir, "vmlinuz", kin.clone())?);
    if !cached(old.as_ref(), &dir, "modules", &kin) {
        distro::modules_tarball(&kroot, &dir.join("vmlinux-modules.tar.gz"))?;
    }
    images.insert(
        "modules".into(),
        entry(&dir, "vmlinux-modules.tar.gz", kin.clone())?,
    );

    // 2. guest initramfs and 3. rootfs.ext4
    let busybox = which("busybox")?;
    let guest_dir = recipes.join("guest");
    let blkid = which("blkid")?;
    let gin = InputHash::default()
        .text("kernel", &kin)
        .text("modules", &GUEST_MODULES.join(","))
        .text("format", "cpio.gz")
        .file(&busybox)?
        .file(&blkid)?
        .tree(&guest_dir)?
        .finish();
    let guest_mods = tree.closure(GUEST_MODULES)?;
    let guest_stage = |root: &str, rootfs: bool| -> Result<Stage> {
        let s = Stage::new(dir.join("stage").join(root))?;
        s.busybox()?;
        let agent = guest_dir.join("agent");
        if rootfs {
            s.copy(&agent, "sbin/init", 0o755)?;
        } else {
            // The boot tool as /init, the agent it runs when there is no root=,
            // and util-linux's blkid (root=PARTUUID=; busybox's lacks it).
            s.copy(&guest_dir.join("init"), "init", 0o755)?;
            s.copy(
                &guest_dir.join("boot-lib.sh"),
                "lib/colinux/boot-lib.sh",
                0o644,
            )?;
            s.copy(&agent, "sbin/colinux-agent", 0o755)?;
            s.binary_with_libs(&blkid, "sbin/blkid")?;
        }
        extras::guest_tools(&s, &guest_dir)?;
        let mut checks = Vec::new();
        crate::util::walk(&guest_dir.join("checks"), &mut checks)?;
        for c in checks {
            let name = c
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            s.copy(&c, &format!("etc/colinux/checks/{name}"), 0o644)?;
        }
        if rootfs {
            s.write(
                "etc/colinux/rootfs",
                b"root file system of the coLinux test guest\n",
                0o644,
            )?;
            std::fs::create_dir_all(s.root.join("newroot"))?;
        } else {
            let order: Vec<String> = guest_mods.iter().map(|m| m.0.clone()).collect();
            s.modules(&guest_mods, Some(&order))?;
        }
        Ok(s)
    };
    if cached(old.as_ref(), &dir, "guest-initrd", &gin) {
        step(2, "guest initramfs (cached)");
    } else {
        step(2, "guest initramfs: busybox, virtio modules, agent");
        guest_stage("guest", false)?.cpio_gz(&dir.join("guest-initrd.img"))?;
    }
    images.insert(
        "guest-initrd".into(),
        entry(&dir, "guest-initrd.img", gin.clone())?,
    );
    let rin = InputHash::default()
        .text("guest", &gin)
        .text("rootfs", "24M")
        .finish();
    if cached(old.as_ref(), &dir, "rootfs", &rin) {
        step(3, "rootfs.ext4 (cached)");
    } else {
        step(3, "rootfs.ext4: busybox root, mke2fs -d");
        guest_stage("rootfs", true)?.ext4(&dir.join("rootfs.ext4"), 24, "colinux-root")?;
    }
    images.insert("rootfs".into(), entry(&dir, "rootfs.ext4", rin.clone())?);

    // 4. the system images (colinux-image bootstrap)
    let key = distro::login_key(&dir)?;
    let pubkey = key.with_extension("pub");
    let colinux_image = opts
        .daemon
        .as_ref()
        .map(|d| d.with_file_name("colinux-image"))
        .filter(|p| p.exists());
    systems::build(
        &systems::SystemInputs {
            dir: &dir,
            old: old.as_ref(),
            colinux_image: colinux_image.as_deref(),
            kernel_inputs: &kin,
            pubkey: &pubkey,
        },
        &mut images,
    )?;

    // 5. host initramfs
    let qemu = which("qemu-system-x86_64")?;
    let ip = which("ip").ok();
    let host_dir = recipes.join("host");
    let firmware: Vec<PathBuf> = INNER_FIRMWARE
        .iter()
        .filter_map(|f| {
            FIRMWARE_DIRS
                .iter()
                .map(|d| Path::new(d).join(f))
                .find(|p| p.exists())
        })
        .collect();
    anyhow::ensure!(
        firmware.iter().any(|p| p.ends_with("bios-256k.bin")),
        "bios-256k.bin not found in {FIRMWARE_DIRS:?} (Debian package seabios)"
    );
    let mut hin = InputHash::default();
    hin.text("kernel", &kin)
        .text("guest", &gin)
        .text("rootfs", &rin)
        .text("modules", &HOST_MODULES.join(","))
        .file(&busybox)?
        .file(&qemu)?
        .tree(&host_dir)?;
    for f in &firmware {
        hin.file(f)?;
    }
    if let Some(ip) = &ip {
        hin.file(ip)?;
    }
    let e2fsprogs = extras::host_e2fsprogs(&mut hin)?;
    // The inner QEMU's vhost-user daemon for cofsN= shares (built once).
    let virtiofsd = virtiofsd::ensure(&dir)?;
    hin.file(&virtiofsd)?;
    let ssh = which("ssh")?;
    hin.file(&ssh)?.file(&key)?;
    // Asked of the daemon once: the manifest records them, the stage ships them.
    let daemon_libs = match &opts.daemon {
        Some(d) => crate::daemon::opened_libraries(d)?,
        None => Vec::new(),
    };
    let daemon = match &opts.daemon {
        Some(d) => {
            hin.file(d)?;
            hin.text("daemon-opened-libs", &daemon_libs.join(","));
            let console = d.with_file_name("colinux-console");
            if console.exists() {
                hin.file(&console)?;
            }
            Some(DaemonEntry {
                path: d.display().to_string(),
                sha256: sha256_file(d)?,
                capabilities: crate::daemon::capabilities(d),
            })
        }
        None => None,
    };
    let hin = hin.finish();
    if cached(old.as_ref(), &dir, "host-initrd", &hin) {
        step(5, "host initramfs (cached)");
    } else {
        step(
            5,
            "host initramfs: busybox, kvm/tun/veth/bridge, qemu, virtiofsd, ssh, colinux-daemon, guest images",
        );
        let s = Stage::new(dir.join("stage").join("host"))?;
        s.busybox()?;
        s.copy(&host_dir.join("init"), "init", 0o755)?;
        s.copy(
            &host_dir.join("host-lib.sh"),
            "etc/colinux/host-lib.sh",
            0o644,
        )?;
        let mut wanted: Vec<&str> = GUEST_MODULES.to_vec();
        wanted.extend(HOST_MODULES);
        let load: Vec<String> = tree.closure(&wanted)?.into_iter().map(|m| m.0).collect();
        let mut all = wanted.clone();
        all.extend(HOST_OPTIONAL_MODULES);
        s.modules(&tree.closure(&all)?, Some(&load))?;
        s.binary_with_libs(&qemu, "usr/bin/qemu-system-x86_64")?;
        for f in &firmware {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            s.copy(f, &format!("{}/{name}", crate::inner::FIRMWARE_DIR), 0o644)?;
        }
        if let Some(ip) = &ip {
            s.binary_with_libs(ip, "usr/sbin/ip")?;
        }
        extras::pack_host_e2fsprogs(&s, &e2fsprogs)?;
        s.binary_with_libs(&virtiofsd, "usr/bin/virtiofsd")?;
        // OpenSSH's client and the key the distro scenario logs in with.
        s.binary_with_libs(&ssh, "usr/bin/ssh")?;
        s.copy(&key, "etc/colinux/distro-key", 0o600)?;
        s.write("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
        s.write("etc/group", b"root:x:0:\n", 0o644)?;
        if let Some(d) = &opts.daemon {
            s.binary_with_libs(d, "usr/bin/colinux-daemon")?;
            for soname in &daemon_libs {
                s.library_with_libs(soname)?;
            }
            let console = d.with_file_name("colinux-console");
            if console.exists() {
                s.binary_with_libs(&console, "usr/bin/colinux-console")?;
            }
        }
        s.copy(&dir.join("vmlinuz"), "images/vmlinuz", 0o644)?;
        s.copy(
            &dir.join("guest-initrd.img"),
            "images/guest-initrd.img",
            0o644,
        )?;
        s.copy(&dir.join("rootfs.ext4"), "images/rootfs.ext4", 0o644)?;
        s.cpio(&dir.join("host-initrd.img"))?;
    }
    images.insert("host-initrd".into(), entry(&dir, "host-initrd.img", hin)?);

    let manifest = Manifest {
        kernel: pkg,
        images,
        daemon,
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    let _ = std::fs::remove_dir_all(dir.join("stage"));
    eprintln!(
        "images: ready in {} ({:.1}s), manifest {}",
        dir.display(),
        t0.elapsed().as_secs_f64(),
        dir.join("manifest.json").display()
    );
    Ok(Images { dir, manifest })
}
