//! Assembling the machine: guest RAM, the kernel and its boot structures, the
//! in-kernel irqchip and PIT, the legacy devices, the PCI bus, and the vCPUs.

use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use colinux_conf::Config;
use colinux_devices::bus::Bus;
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::legacy::i8042::{I8042, KEYBOARD_IRQ};
use colinux_devices::legacy::power::AcpiPower;
use colinux_devices::legacy::serial::{IrqEdge, SerialPort};
use colinux_devices::legacy::vga::{self, TextScreen, VgaText};
use colinux_devices::legacy::{PowerEvent, PowerSink};
use colinux_devices::pci::{MmioWindow, PciConfigIo, PciMmio, PciRoot};
use colinux_driver::arch::x86_64::acpi;
use colinux_driver::arch::x86_64::layout::{
    mmio64_window, MemoryLayout, MMIO32_SIZE, MMIO32_START,
};
use colinux_driver::arch::x86_64::setup::{configure_vcpu, prepare_guest, BootImages};
use colinux_driver::hypervisor::kvm::KvmHypervisor;
use colinux_driver::hypervisor::{CpuIdEntry, Hypervisor, Vcpu, Vm};
use vm_memory::GuestMemoryMmap;

use super::console::ConsoleOut;
use super::interrupts::VmInterrupts;
use super::vcpu::{self, MachineEvent, VcpuContext};
use crate::cli::RunOptions;

/// COM1.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;
/// The i8042 data port (the range runs to the command port 0x64).
pub const I8042_PORT: u64 = 0x60;
/// PCI configuration mechanism #1.
pub const PCI_CONFIG_PORT: u64 = 0xcf8;

/// What to build, resolved from the configuration and the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The complete kernel command line.
    pub cmdline: String,
    /// The configuration (its cobdN/ethN become PCI devices).
    pub config: Config,
    /// Host address slirp redirections listen on.
    pub slirp_bind: std::net::Ipv4Addr,
}

impl MachineSpec {
    /// Resolves `config` + `options` (default memory, command line rules).
    pub fn from_config(config: &Config, options: &RunOptions) -> Result<Self> {
        let kernel = config.kernel.resolve();
        if !kernel.is_file() {
            bail!("kernel={}: no such file", kernel.display());
        }
        let initrd = config.initrd.as_ref().map(|p| p.resolve());
        if let Some(i) = &initrd {
            if !i.is_file() {
                bail!("initrd={}: no such file", i.display());
            }
        }
        Ok(Self {
            mem_mib: config.guest_mem_mib(super::host_mem_mib())?,
            cpus: options.cpus.max(1),
            kernel,
            initrd,
            cmdline: super::cmdline::build(
                &config.kernel_cmdline,
                options.suppress_kernel_messages,
                &super::cmdline::DeviceNames {
                    aliases: config
                        .block_devices
                        .iter()
                        .flat_map(|b| b.aliases.iter().map(move |a| (a.clone(), b.index)))
                        .collect(),
                    nics: {
                        let seed = super::devices::vm_seed(config);
                        config
                            .network
                            .iter()
                            .map(|n| (n.index, n.effective_mac(&seed).to_string()))
                            .collect()
                    },
                },
                &super::screen::kernel_words(config),
            ),
            config: config.clone(),
            slirp_bind: options.slirp_bind.unwrap_or(std::net::Ipv4Addr::LOCALHOST),
        })
    }
}

/// The assembled machine, before its vCPUs run.
pub struct Machine {
    /// The VM.
    pub vm: Arc<dyn Vm>,
    /// Guest RAM.
    pub memory: GuestMemoryMmap,
    /// The serial console (host input goes here).
    pub serial: Arc<Mutex<SerialPort<ConsoleOut>>>,
    /// The keyboard controller (host key presses go here).
    pub keyboard: Arc<Mutex<I8042>>,
    /// The VGA text screen's registers (its text lives in guest RAM).
    pub vga: Arc<Mutex<VgaText>>,
    /// The PCI bus.
    pub pci: Arc<Mutex<PciRoot>>,
    /// Queue doorbells registered as ioeventfds.
    pub doorbells: Arc<super::doorbells::Doorbells>,
    /// Port I/O devices.
    pub pio: Bus,
    /// MMIO devices.
    pub mmio: Bus,
    vcpus: Vec<Box<dyn Vcpu>>,
    events: Sender<MachineEvent>,
}

impl Machine {
    /// Builds the machine on KVM; power events and vCPU ends go to `events`.
    pub fn build(
        spec: &MachineSpec,
        events: Sender<MachineEvent>,
        out: ConsoleOut,
    ) -> Result<Self> {
        let hv = KvmHypervisor::new().context("opening KVM")?;
        Self::build_on(&hv, spec, events, out)
    }

    /// Builds the machine on any hypervisor backend. The kernel and initrd
    /// are loaded (the kernel decompressed) on a thread of their own while the
    /// VM, its devices and vCPUs are created.
    pub fn build_on(
        hv: &dyn Hypervisor,
        spec: &MachineSpec,
        events: Sender<MachineEvent>,
        out: ConsoleOut,
    ) -> Result<Self> {
        let mut phases = super::timing::Phases::new();
        let layout = MemoryLayout::new(spec.mem_mib)?;
        let memory = layout.allocate()?;
        phases.mark("alloc");
        let images = BootImages {
            kernel: &spec.kernel,
            initrd: spec.initrd.as_deref(),
            cmdline: &spec.cmdline,
            extra_com: super::ttys::extra_com(&spec.config),
            text_screen: Some(super::screen::boot_mode(super::screen::text_size(
                &spec.config,
            ))),
        };
        let (guest, images_ms, (machine, cpuid)) = std::thread::scope(|s| -> Result<_> {
            let loader = s.spawn(|| {
                let t = Instant::now();
                let r = prepare_guest(&memory, &layout, &images, spec.cpus);
                (r, t.elapsed().as_millis() as u64)
            });
            let assembled = Self::assemble(hv, spec, memory.clone(), events, out);
            let (guest, images_ms) = loader
                .join()
                .map_err(|_| anyhow::anyhow!("the kernel loader thread panicked"))?;
            Ok((guest?, images_ms, assembled?))
        })?;
        phases.mark("vm+devices+images");
        tracing::info!(
            mem_mib = spec.mem_mib,
            cpus = spec.cpus,
            entry = format_args!("{:#x}", guest.entry),
            cmdline = %spec.cmdline,
            images_ms,
            "guest prepared"
        );
        for vcpu in &machine.vcpus {
            configure_vcpu(vcpu.as_ref(), &machine.memory, &cpuid, spec.cpus, &guest)
                .with_context(|| format!("setting up vCPU {}", vcpu.id()))?;
        }
        phases.mark("vcpus");
        tracing::info!(total_ms = phases.total_ms(), "machine built: {phases}");
        Ok(machine)
    }

    /// The VM with its memory, irqchip and PIT; the legacy devices, the PCI
    /// bus with the configured devices, the port and MMIO buses; and the
    /// vCPUs, created but not yet configured (with the CPUID they are to
    /// get). Runs while the kernel loads into `memory`.
    fn assemble(
        hv: &dyn Hypervisor,
        spec: &MachineSpec,
        memory: GuestMemoryMmap,
        events: Sender<MachineEvent>,
        out: ConsoleOut,
    ) -> Result<(Self, Vec<CpuIdEntry>)> {
        let vm = hv.create_vm()?;
        vm.set_memory(&memory)?;
        vm.create_irqchip()?;
        vm.create_pit()?;

        let irq: Arc<dyn InterruptSink> = Arc::new(VmInterrupts::new(vm.clone()));
        let power: PowerSink = {
            let events = Mutex::new(events.clone());
            Arc::new(move |e: PowerEvent| {
                tracing::debug!(?e, "power event from the guest");
                let ev = match e {
                    PowerEvent::Reset => MachineEvent::Reset,
                    PowerEvent::Poweroff => MachineEvent::Poweroff,
                };
                let _ = events.lock().unwrap_or_else(|p| p.into_inner()).send(ev);
            })
        };
        let serial = Arc::new(Mutex::new(SerialPort::new(irq.clone(), COM1_IRQ, out)));
        let pci = Arc::new(Mutex::new(PciRoot::new(MmioWindow {
            base: MMIO32_START,
            size: MMIO32_SIZE,
        })));

        super::devices::add_devices(&spec.config, spec.slirp_bind, &pci, &memory, &irq)?;
        let doorbells = Arc::new(super::doorbells::Doorbells::new(vm.clone(), pci.clone()));

        let keyboard = Arc::new(Mutex::new(I8042::new(
            power.clone(),
            Some(IrqEdge::new(irq.clone(), KEYBOARD_IRQ)),
        )));
        let vga = Arc::new(Mutex::new(VgaText::new(super::screen::text_size(
            &spec.config,
        ))));
        let mut pio = Bus::new();
        pio.insert(serial.clone(), COM1_PORT, 8)?;
        pio.insert(keyboard.clone(), I8042_PORT, 5)?;
        pio.insert(vga.clone(), vga::VGA_PORT_BASE, vga::VGA_PORT_COUNT)?;
        pio.insert(
            Arc::new(Mutex::new(AcpiPower::new(
                acpi::S5_SLEEP_TYPE,
                acpi::RESET_VALUE,
                power,
            ))),
            u64::from(acpi::SLEEP_CONTROL_PORT),
            3,
        )?;
        pio.insert(
            Arc::new(Mutex::new(super::doorbells::ConfigPorts::new(
                PciConfigIo::new(pci.clone()),
                doorbells.clone(),
            ))),
            PCI_CONFIG_PORT,
            8,
        )?;
        let mut mmio = Bus::new();
        // No lock around the window: each PCI device has its own, so a vCPU
        // waiting on one device (a long blk request) never blocks the others.
        mmio.insert_shared(
            Arc::new(PciMmio::new(pci.clone())),
            MMIO32_START,
            MMIO32_SIZE,
        )?;
        // The 64-bit window the DSDT's _CRS advertises decodes too: a guest
        // that moves a 64-bit BAR there (pci=realloc, hotplug-style
        // reassignment) still reaches the device.
        let (mmio64_base, mmio64_len) = mmio64_window(&MemoryLayout::new(spec.mem_mib)?);
        mmio.insert_shared(
            Arc::new(PciMmio::at(pci.clone(), mmio64_base)),
            mmio64_base,
            mmio64_len,
        )?;

        let cpuid = hv.supported_cpuid()?;
        let vcpus = (0..spec.cpus)
            .map(|id| vm.create_vcpu(id).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        let machine = Machine {
            vm,
            memory,
            serial,
            keyboard,
            vga,
            pci,
            doorbells,
            pio,
            mmio,
            vcpus,
            events,
        };
        Ok((machine, cpuid))
    }

    /// What the guest's screen shows now (read from guest RAM on each call).
    pub fn screen_source(&self) -> impl Fn() -> TextScreen + Send + Sync + 'static {
        let vga = self.vga.clone();
        let memory = self.memory.clone();
        move || {
            let regs = vga.lock().unwrap_or_else(|e| e.into_inner()).clone();
            regs.snapshot(&memory)
        }
    }

    /// Starts one thread per vCPU.
    pub fn start(
        &mut self,
        stop: Arc<AtomicBool>,
        exit_stats: bool,
    ) -> Result<Vec<JoinHandle<()>>> {
        let mut handles = Vec::new();
        for vcpu in self.vcpus.drain(..) {
            let ctx = VcpuContext {
                vcpu,
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                memory: self.memory.clone(),
                stop: stop.clone(),
                events: self.events.clone(),
                exit_stats,
            };
            let id = ctx.vcpu.id();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("vcpu{id}"))
                    .spawn(move || vcpu::run(ctx))
                    .context("spawning a vCPU thread")?,
            );
        }
        Ok(handles)
    }
}

/// Stops the vCPU threads: sets `stop`, then kicks every thread still in
/// `KVM_RUN` with the kick signal until all have returned (a kick that lands
/// just before `KVM_RUN` is repeated), and joins them.
pub fn stop_vcpus(stop: &AtomicBool, handles: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let running: Vec<&JoinHandle<()>> = handles.iter().filter(|h| !h.is_finished()).collect();
        if running.is_empty() || Instant::now() > deadline {
            break;
        }
        for h in running {
            // SAFETY: the pthread handle is valid while the JoinHandle is alive
            // and the thread has not been joined.
            unsafe { libc::pthread_kill(h.as_pthread_t(), vcpu::kick_signal()) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for h in handles {
        if h.is_finished() {
            let _ = h.join();
        }
    }
}
