//! Choosing the host VM's accelerator: KVM only where a probe shows a stock
//! kernel really boots under it; otherwise TCG with `-cpu EPYC,+svm`. The probe
//! result is cached in target/ci-boot/accel.json, keyed by machine and images.

use crate::images::Images;
use crate::qemu::{Accel, ConsoleEvent, HostVm};
use crate::util::InputHash;
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

/// The decision and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// One line on why.
    pub reason: String,
    /// Cache key it was made under.
    pub key: String,
}

fn cache_key(images: &Images) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(String::from)
        })
        .unwrap_or_default();
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let modules = std::fs::read_dir("/sys/module")
        .map(|d| {
            let mut v: Vec<String> = d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kvm"))
                .collect();
            v.sort();
            v.join(",")
        })
        .unwrap_or_default();
    InputHash::default()
        .text("cpu", &cpu)
        .text("qemu", &qemu)
        .text("kvm", &modules)
        .text("kernel", &images.manifest.kernel.version)
        .finish()
}

/// Pick the accelerator (env `COLINUX_ACCEL=kvm|tcg` overrides).
pub fn choose(images: &Images, cache: &Path) -> Result<AccelChoice> {
    let key = cache_key(images);
    let mk = |accel, reason: &str| AccelChoice {
        accel,
        reason: reason.to_string(),
        key: key.clone(),
    };
    match std::env::var("COLINUX_ACCEL").as_deref() {
        Ok("tcg") => return Ok(mk(Accel::Tcg, "COLINUX_ACCEL=tcg")),
        Ok("kvm") => return Ok(mk(Accel::Kvm, "COLINUX_ACCEL=kvm")),
        _ => {}
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(mk(Accel::Tcg, "no /dev/kvm"));
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Ok(mk(
            Accel::Tcg,
            "/dev/kvm is kvm_pvm, which cannot boot a stock kernel",
        ));
    }
    if let Ok(t) = std::fs::read_to_string(cache) {
        if let Ok(c) = serde_json::from_str::<AccelChoice>(&t) {
            if c.key == key {
                return Ok(c);
            }
        }
    }
    let choice = probe(images, cache.with_extension("log").as_path(), &key);
    if let Some(p) = cache.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(cache, serde_json::to_string_pretty(&choice)?)?;
    Ok(choice)
}

/// Boot the host VM under KVM with no work disk: it must reach its init and
/// get a working nested /dev/kvm within 45 s.
fn probe(images: &Images, log: &Path, key: &str) -> AccelChoice {
    eprintln!("accel: probing whether -accel kvm boots a stock kernel with nesting (max 45 s)");
    let vm = HostVm {
        qemu: "qemu-system-x86_64".into(),
        kernel: images.path("kernel"),
        initrd: images.path("host-initrd"),
        append: "console=ttyS0 panic=-1 loglevel=3".into(),
        mem_mib: 1024,
        smp: 2,
        accel: Accel::Kvm,
        disks: vec![],
        control: None,
    };
    let _ = std::fs::remove_file(log);
    let verdict = match vm.spawn(log) {
        Err(e) => Err(format!("cannot start: {e:#}")),
        Ok(mut c) => {
            let deadline = Instant::now() + Duration::from_secs(45);
            loop {
                match c.next_event(deadline) {
                    ConsoleEvent::Line(l) if l.contains("COLINUX-HOST READY kvm=yes") => {
                        break Ok(())
                    }
                    ConsoleEvent::Line(l) if l.contains("COLINUX-HOST READY kvm=no") => {
                        break Err("booted but no nested /dev/kvm".to_string())
                    }
                    ConsoleEvent::Line(_) => {}
                    ConsoleEvent::Eof => break Err("exited before init".into()),
                    ConsoleEvent::Timeout => break Err("no init within 45 s".into()),
                }
            }
        }
    };
    match verdict {
        Ok(()) => AccelChoice {
            accel: Accel::Kvm,
            reason: "probe: stock kernel booted under KVM with nested /dev/kvm".into(),
            key: key.into(),
        },
        Err(why) => AccelChoice {
            accel: Accel::Tcg,
            reason: format!("probe under KVM failed ({why}; log {})", log.display()),
            key: key.into(),
        },
    }
}
