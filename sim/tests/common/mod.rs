//! Shared test scaffolding: a simulated machine with the daemon's devices,
//! run through the daemon's own vCPU loop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use colinux_daemon::vmm::machine::MachineSpec;
use colinux_daemon::vmm::vcpu::{self, MachineEvent, VcpuContext};
use colinux_devices::block::DiskImage;
use colinux_sim::guest::{GuestCpu, GuestError, GuestResult};
use colinux_sim::guest_virtio::pci::{self, PciFunction};
use colinux_sim::machine::SimMachine;
use colinux_sim::vcpu::SimVcpu;
use colinux_sim::vm::SimConfig;

/// Runs `vcpu` on this thread through the daemon's vCPU loop
/// (`colinux_daemon::vmm::vcpu::run`) until it reports how the machine ends.
pub fn run_daemon_loop(m: &SimMachine, vcpu: SimVcpu) -> MachineEvent {
    let (tx, rx) = mpsc::channel();
    let ctx = VcpuContext {
        vcpu: Box::new(vcpu),
        pio: m.pio.clone(),
        mmio: m.mmio.clone(),
        memory: m.memory.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        events: tx,
        // The counting path runs in every sim test too.
        exit_stats: true,
    };
    vcpu::run(ctx);
    rx.try_recv()
        .expect("the daemon's vCPU loop returned without an event")
}

/// A machine with 64 MiB of RAM.
pub fn machine() -> SimMachine {
    SimMachine::new(SimConfig::default(), 64).expect("simulated machine")
}

/// A temp directory holding one disk image of `sectors` sectors with a
/// recognisable pattern (sector `n` starts with `n` as u32 LE).
pub struct TempDisk {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

pub fn temp_disk(sectors: u64) -> TempDisk {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cobd0.img");
    let mut contents = vec![0u8; (sectors * 512) as usize];
    for (i, b) in contents.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ ((i / 512) as u8);
    }
    for s in 0..sectors as usize {
        contents[s * 512..s * 512 + 4].copy_from_slice(&(s as u32).to_le_bytes());
    }
    std::fs::write(&path, &contents).expect("write image");
    TempDisk {
        dir,
        path,
        contents,
    }
}

pub fn open_image(d: &TempDisk, read_only: bool) -> DiskImage {
    DiskImage::open(&d.path, read_only).expect("open image")
}

/// Guest side: probe conf1, enumerate bus 0, return the function with `device`.
pub fn find(cpu: &mut GuestCpu, device: u16) -> GuestResult<PciFunction> {
    pci::probe_conf1(cpu)?;
    pci::scan(cpu)?
        .into_iter()
        .find(|f| f.vendor == 0x1af4 && f.device == device)
        .ok_or_else(|| GuestError::Device(format!("no virtio device {device:#x} on bus 0")))
}

/// Turns a guest-side expectation into a guest error (no panics in the guest).
pub fn ensure(cond: bool, what: impl Into<String>) -> GuestResult<()> {
    if cond {
        Ok(())
    } else {
        Err(GuestError::Device(what.into()))
    }
}

/// Runs `vcpu` through the daemon's vCPU loop and asserts that the guest
/// powered off (showing how its program ended if not).
#[track_caller]
pub fn run_to_poweroff(m: &SimMachine, vcpu: SimVcpu) {
    assert_eq!(
        run_daemon_loop(m, vcpu),
        MachineEvent::Poweroff,
        "{:?}",
        m.vm.outcome(0)
    );
}

/// A minimal bzImage: a boot-protocol 2.15 setup header with a 64-bit entry,
/// and a 4 KiB protected-mode part.
pub fn fake_bzimage(path: &Path) {
    let mut img = vec![0u8; 5 * 512 + 4096];
    img[0x1f1] = 4; // setup_sects
    img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x211] = 1; // LOADED_HIGH
    img[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    img[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    img[0x230..0x234].copy_from_slice(&0x100_0000u32.to_le_bytes());
    img[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    img[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    img[5 * 512 + 0x200] = 0xf4; // hlt at the 64-bit entry
    std::fs::write(path, img).unwrap();
}

/// The daemon's machine spec for tests: a [`fake_bzimage`] written to
/// `dir/vmlinuz`, the conf `kernel=<it> WORDS`, 64 MiB, `cpus` vCPUs and the
/// kernel command line `cmdline`.
pub fn daemon_spec(dir: &Path, words: &str, cmdline: &str, cpus: u32) -> MachineSpec {
    let kernel = dir.join("vmlinuz");
    fake_bzimage(&kernel);
    let text = format!("kernel={} {words}", kernel.display());
    let config = colinux_conf::parse_str(&text, Path::new("sim.conf"), dir).unwrap();
    MachineSpec {
        mem_mib: 64,
        cpus,
        kernel,
        initrd: None,
        cmdline: cmdline.into(),
        config,
        slirp_bind: std::net::Ipv4Addr::LOCALHOST,
    }
}
