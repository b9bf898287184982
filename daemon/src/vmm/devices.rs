//! The configuration's block and network devices as virtio-pci functions on the
//! PCI bus, and the thread that feeds network frames from the host to them.
//!
//! `cobdN` becomes a virtio-blk device whose serial is `cobdN` (the guest init
//! names `/dev/cobdN` from it); `ethN` becomes a virtio-net device on the host
//! backend the entry names (slirp, tuntap, pcap-bridge/ndis-bridge); `cofsN`
//! becomes a virtio-fs device whose tag is `cofsN`.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use colinux_conf::Config;
use colinux_devices::block::DiskImage;
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::pci::PciRoot;
use colinux_devices::virtio::blk::BlockDevice;
use colinux_devices::virtio::fs::FsDevice;
use colinux_devices::virtio::net::NetDevice;
use colinux_devices::virtio::pci::VirtioPciDevice;
use colinux_devices::virtio::VirtioDevice;
use colinux_driver::arch::x86_64::pci_irq;
use colinux_net::{open_backend, NicSpec};
use vm_memory::GuestMemoryMmap;

use super::doorbells::Doorbells;

/// The classic MAC seed of a VM: what identifies it across runs (its kernel and
/// root disk), so a derived MAC stays the same and the guest keeps its lease.
pub fn vm_seed(config: &Config) -> String {
    let disk = config
        .block_devices
        .first()
        .map(|b| b.path.resolve().display().to_string())
        .unwrap_or_default();
    format!("{}|{}", config.kernel.resolve().display(), disk)
}

fn nic_spec(net: &colinux_conf::NetDeviceConf, seed: &str, slirp_bind: Ipv4Addr) -> NicSpec {
    let mut spec = NicSpec::new(net.kind, net.effective_mac(seed).0);
    spec.host_interface = net.host_interface.clone();
    spec.promiscuous = net.promiscuous.unwrap_or(true);
    spec.redirect_bind = slirp_bind;
    spec.redirections = net.redirections.clone();
    spec
}

/// The legacy INTx line (IOAPIC GSI) of the device `root` adds next: its
/// slot's INTA# as [`pci_irq`] routes it (and the ACPI `_PRT` and MP table
/// describe it). The device raises it while the guest has not enabled MSI-X
/// (e.g. a kernel booted with `pci=nomsi`).
fn next_intx_line(root: &PciRoot) -> Option<u32> {
    root.next_slot().map(|slot| pci_irq::gsi(slot, 1))
}

/// Puts `dev` on the next free slot of `root` behind the virtio-pci transport,
/// with its routed INTx line; returns the slot. `what` names it in errors.
fn plug(
    root: &PciRoot,
    dev: impl VirtioDevice + 'static,
    mem: &GuestMemoryMmap,
    irq: &Arc<dyn InterruptSink>,
    what: &str,
) -> Result<u8> {
    let intx = next_intx_line(root);
    root.add_device(Box::new(VirtioPciDevice::new(
        dev,
        mem.clone(),
        irq.clone(),
        intx,
    )))
    .with_context(|| what.to_string())
}

/// Adds every `cobdN`, `ethN` and `cofsN` of `config` to `pci`, each with its routed
/// INTx line; slirp redirections listen on `slirp_bind`.
pub fn add_devices(
    config: &Config,
    slirp_bind: Ipv4Addr,
    pci: &Mutex<PciRoot>,
    mem: &GuestMemoryMmap,
    irq: &Arc<dyn InterruptSink>,
) -> Result<()> {
    let root = pci.lock().unwrap_or_else(|e| e.into_inner());
    for b in &config.block_devices {
        let path = b.path.resolve();
        // A file nobody may write is meant read-only, even for root (who could
        // write it anyway): the guest gets it read-only, as the user intended.
        let no_write_bits = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o222 == 0)
            .unwrap_or(false);
        let image =
            DiskImage::open(&path, no_write_bits).with_context(|| format!("cobd{}", b.index))?;
        if image.read_only() {
            eprintln!(
                "colinux-daemon: cobd{}: {} is not writable; the guest gets it read-only",
                b.index,
                path.display()
            );
        }
        let name = format!("cobd{}", b.index);
        let slot = plug(&root, BlockDevice::new(image, &name), mem, irq, &name)?;
        tracing::info!(slot, "cobd{} = {}", b.index, path.display());
    }
    let seed = vm_seed(config);
    for n in &config.network {
        let spec = nic_spec(n, &seed, slirp_bind);
        let backend =
            open_backend(&spec).with_context(|| format!("eth{}={}", n.index, n.kind.keyword()))?;
        let dev = NetDevice::new(backend, spec.mac);
        let slot = plug(&root, dev, mem, irq, &format!("eth{}", n.index))?;
        tracing::info!(slot, "eth{} = {}", n.index, n.kind.keyword());
    }
    if !config.cofs.is_empty() {
        raise_open_file_limit();
    }
    for s in &config.cofs {
        let tag = format!("cofs{}", s.index);
        let dir = s.path.resolve();
        let dev = FsDevice::new(&dir, &tag, s.read_only).with_context(|| tag.clone())?;
        let slot = plug(&root, dev, mem, irq, &tag)?;
        let ro = if s.read_only { " (read-only)" } else { "" };
        tracing::info!(slot, "{tag} = {}{ro}", dir.display());
    }
    Ok(())
}

/// A share keeps one descriptor open for every file the guest has looked up
/// and not forgotten (its dentry cache): `find` over a large tree would hit
/// the usual soft limit of 1024. Raises the soft limit to the hard one, as
/// virtiofsd does, and says what it got.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the `rlimit` passed.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if raised {
        tracing::debug!(limit = lim.rlim_cur, "open files limit for the cofs shares");
    } else {
        tracing::warn!(
            "cannot raise the open files limit: a cofs share may fail with EMFILE \
             once the guest holds many files ({})",
            std::io::Error::last_os_error()
        );
    }
}

/// Serves the devices' host descriptors (network receive) and queue doorbells
/// until `stop` is set: one thread per device with queues, so a device busy
/// with a long request (a blk read on a stalled disk) never delays another
/// device's doorbells or frames. Each thread refreshes its poll set every
/// round: a device with no guest buffers leaves the backend set, and doorbells
/// appear once the guest enables a device. The handle returned ends when all
/// device threads have.
pub fn spawn_device_poller(
    pci: Arc<Mutex<PciRoot>>,
    doorbells: Option<Arc<Doorbells>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    if let Some(d) = &doorbells {
        d.enable();
    }
    let root = pci.lock().unwrap_or_else(|e| e.into_inner()).clone();
    std::thread::spawn(move || {
        let slots = root.queue_slots();
        std::thread::scope(|s| {
            for slot in slots {
                let (root, doorbells, stop) = (&root, doorbells.as_deref(), &stop);
                let spawned = std::thread::Builder::new()
                    .name(format!("pci-{slot:02x}"))
                    .spawn_scoped(s, move || serve_device(root, slot, doorbells, stop));
                if let Err(e) = spawned {
                    tracing::error!(slot, "cannot start the device thread: {e}");
                }
            }
        });
    })
}

/// The loop of one device's thread (see [`spawn_device_poller`]): one poll
/// over the backend's ready descriptor, the device's doorbells and the
/// descriptors its backend serves here (slirp's sockets, whose timers bound
/// the wait), then the work each asks for.
fn serve_device(root: &PciRoot, slot: u8, doorbells: Option<&Doorbells>, stop: &AtomicBool) {
    if is_network(root, slot) {
        yield_to_vcpus(slot);
    }
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let backend = root.backend_fd(slot);
        let bells: Vec<_> = doorbells
            .map(|d| d.poll_set())
            .unwrap_or_default()
            .into_iter()
            .filter(|&(_, s, _)| s == slot)
            .collect();
        let watch = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        pfds.clear();
        pfds.extend(backend.into_iter().map(watch));
        pfds.extend(bells.iter().map(|(fd, _, _)| watch(fd.as_raw_fd())));
        let own_at = pfds.len();
        // Nothing to wait for yet (no guest buffers, no doorbells): look again soon.
        let mut timeout_ms = if own_at == 0 { 5 } else { 20 };
        let own = root.poll_fds(slot, &mut pfds, &mut timeout_ms);
        // SAFETY: `pfds` is a valid array of pollfd for the duration of the call
        // (an empty one makes poll a plain sleep).
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        // The backend's sockets and timers, also after a timeout.
        root.poll_done(slot, &pfds[own_at..]);
        if n < 0 {
            continue;
        }
        let (pb, rest) = pfds.split_at(usize::from(backend.is_some()));
        for (p, (fd, _, queue)) in rest.iter().zip(&bells) {
            if let (true, Some(d)) = (p.revents != 0, doorbells) {
                d.ring(fd, slot, *queue);
            }
        }
        if own > 0 || pb.first().is_some_and(|p| p.revents != 0) {
            root.process_backend(slot);
        }
    }
}

/// Whether the function in `slot` is a network controller (PCI class 02h).
fn is_network(root: &PciRoot, slot: u8) -> bool {
    let mut class = [0u8; 4];
    root.config_read(slot, 0, 0x08, &mut class);
    class[3] == 0x02
}

/// Puts the calling device thread in `SCHED_BATCH`, which does not preempt
/// the running thread when it wakes. A guest's kick (an ioeventfd) then no
/// longer switches a CPU shared with the vCPU thread to the device thread at
/// once: the vCPU runs on and queues more buffers, which the device takes in
/// one pass when the vCPU halts or its time slice ends. With a free CPU the
/// device thread runs there at once, as before. Measured with one host-VM
/// vCPU (`bench net`): slirp guest-to-host 0.5 -> 3.3 MiB/s, KVM exits per
/// MiB 5074 -> 430; TAP guest-to-host 0.4 -> 4.4 MiB/s. Network devices
/// only: with the disk's thread in it too, cobd's 4 KiB reads at queue depth
/// 1 went from 1215 to 934 per second, since the guest then idles (a halt
/// and a wake-up) before each request runs. Leaving the normal policy needs
/// no privilege; if it fails, the thread runs on as it is.
fn yield_to_vcpus(slot: u8) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: changes only the calling thread's policy (pid 0), from a valid
    // sched_param that the call only reads.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!(
            slot,
            "device thread stays in the normal policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// [`spawn_device_poller`] for network backends only (doorbells stay MMIO exits).
pub fn spawn_backend_poller(pci: Arc<Mutex<PciRoot>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    spawn_device_poller(pci, None, stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use colinux_devices::pci::MmioWindow;

    /// Interrupts go nowhere: the test only reads configuration space.
    struct NoInterrupts;
    impl InterruptSink for NoInterrupts {
        fn send_msi(&self, _: u64, _: u32) -> std::io::Result<()> {
            Ok(())
        }
        fn set_irq_line(&self, _: u32, _: bool) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A network backend with nothing to say.
    struct Silent(std::fs::File);
    impl colinux_net::NetBackend for Silent {
        fn send(&mut self, _: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn recv(&mut self, _: &mut [u8]) -> std::io::Result<Option<usize>> {
            Ok(None)
        }
        fn ready_fd(&self) -> std::os::fd::RawFd {
            self.0.as_raw_fd()
        }
        fn stats(&self) -> colinux_net::NetStats {
            colinux_net::NetStats::default()
        }
    }

    #[test]
    fn only_network_functions_count_as_network() {
        let mem = colinux_driver::arch::x86_64::layout::MemoryLayout::new(32)
            .unwrap()
            .allocate()
            .unwrap();
        let irq: Arc<dyn InterruptSink> = Arc::new(NoInterrupts);
        let root = PciRoot::new(MmioWindow {
            base: 0xe000_0000,
            size: 0x1000_0000,
        });
        let disk = tempfile::NamedTempFile::new().unwrap();
        disk.as_file().set_len(1 << 20).unwrap();
        let image = DiskImage::open(disk.path(), false).unwrap();
        let blk = plug(&root, BlockDevice::new(image, "cobd0"), &mem, &irq, "cobd0").unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let nic = NetDevice::new(Box::new(Silent(null)), [2, 0, 0, 0, 0, 1]);
        let net = plug(&root, nic, &mem, &irq, "eth0").unwrap();
        assert!(is_network(&root, net));
        assert!(!is_network(&root, blk));
        assert!(!is_network(&root, 31), "an empty slot");
    }

    #[test]
    fn a_device_thread_yields_to_vcpus_by_batch_policy() {
        let policy = std::thread::spawn(|| {
            super::yield_to_vcpus(1);
            // SAFETY: reads the calling thread's own policy.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
        // SAFETY: as above, for this thread, which the call did not touch.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }
}
