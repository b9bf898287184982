//! A small machine around a [`SimVm`], wired like the daemon wires its own:
//! guest RAM at 0, the PCI root with configuration mechanism #1 on the port
//! bus at 0xCF8 and the BAR window on the MMIO bus at `MMIO32_START`, devices
//! interrupting through the VM, and a boot vCPU in the driver's 64-bit entry
//! state. Tests add the daemon's real virtio devices to it and run a guest
//! program through the daemon's vCPU loop.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use colinux_devices::block::BlockBackend;
use colinux_devices::bus::{Bus, BusError};
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::pci::{MmioWindow, PciConfigIo, PciError, PciMmio, PciRoot};
use colinux_devices::virtio::blk::BlockDevice;
use colinux_devices::virtio::net::NetDevice;
use colinux_devices::virtio::pci::VirtioPciDevice;
use colinux_driver::arch::x86_64::cpu::{boot_cpu_state, boot_fpu, boot_msrs, EntryMode};
use colinux_driver::arch::x86_64::layout::{
    KERNEL_START, MMIO32_SIZE, MMIO32_START, PAGE_TABLES_PAGES, PAGE_TABLES_START, ZERO_PAGE_START,
};
use colinux_driver::arch::x86_64::paging::{self, TableArea};
use colinux_driver::hypervisor::{HypervisorError, Vcpu, Vm};
use colinux_net::NetBackend;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};

use crate::guest::GuestProgram;
use crate::guest_virtio::GuestAlloc;
use crate::vcpu::SimVcpu;
use crate::vm::{SimConfig, SimVm};

/// Port of configuration mechanism #1.
pub const PCI_CONFIG_PORT: u64 = 0xcf8;
/// Where the scripted guest's driver allocates rings and buffers.
pub const GUEST_HEAP_START: u64 = 16 << 20;

/// Errors assembling a simulated machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Guest RAM could not be mapped.
    #[error("guest RAM of {mib} MiB: {why}")]
    Memory {
        /// Requested size.
        mib: u64,
        /// What failed.
        why: String,
    },
    /// A bus range clashed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The PCI bus refused a device.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// The VM or vCPU refused a setting.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Boot structures could not be built.
    #[error("boot state: {0}")]
    Boot(String),
}

/// The simulated machine.
pub struct SimMachine {
    /// The VM (trace, faults, programs).
    pub vm: SimVm,
    /// Guest RAM.
    pub memory: GuestMemoryMmap,
    /// The PCI bus.
    pub pci: Arc<Mutex<PciRoot>>,
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// Interrupt sink devices use (the VM).
    pub sink: Arc<dyn InterruptSink>,
}

fn lock(m: &Mutex<PciRoot>) -> MutexGuard<'_, PciRoot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimMachine {
    /// A machine with `mem_mib` MiB of RAM and an empty PCI bus.
    pub fn new(config: SimConfig, mem_mib: u64) -> Result<Self, MachineError> {
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (mem_mib << 20) as usize)])
            .map_err(|e| MachineError::Memory {
            mib: mem_mib,
            why: e.to_string(),
        })?;
        let vm = SimVm::new(config);
        vm.set_memory(&memory)?;
        vm.create_irqchip()?;
        let pci = Arc::new(Mutex::new(PciRoot::new(MmioWindow {
            base: MMIO32_START,
            size: MMIO32_SIZE,
        })));
        let mut pio = Bus::new();
        pio.insert(
            Arc::new(Mutex::new(PciConfigIo::new(pci.clone()))),
            PCI_CONFIG_PORT,
            8,
        )?;
        let mut mmio = Bus::new();
        mmio.insert(
            Arc::new(Mutex::new(PciMmio::new(pci.clone()))),
            MMIO32_START,
            MMIO32_SIZE,
        )?;
        let sink: Arc<dyn InterruptSink> = Arc::new(vm.clone());
        Ok(SimMachine {
            vm,
            memory,
            pci,
            pio,
            mmio,
            sink,
        })
    }

    /// Adds the daemon's virtio-blk over `image`; returns its slot.
    pub fn add_block(
        &self,
        image: impl BlockBackend + 'static,
        serial: &str,
        intx: Option<u32>,
    ) -> Result<u8, MachineError> {
        let dev = VirtioPciDevice::new(
            BlockDevice::new(image, serial),
            self.memory.clone(),
            self.sink.clone(),
            intx,
        );
        Ok(lock(&self.pci).add_device(Box::new(dev))?)
    }

    /// Adds the daemon's virtio-net over `backend`; returns its slot.
    pub fn add_net(&self, backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Result<u8, MachineError> {
        let dev = VirtioPciDevice::new(
            NetDevice::new(backend, mac),
            self.memory.clone(),
            self.sink.clone(),
            None,
        );
        Ok(lock(&self.pci).add_device(Box::new(dev))?)
    }

    /// While the guest halts, lets every device whose backend fd is readable
    /// service it (what the daemon's backend poller thread does), on the vCPU's
    /// thread so the order of events stays deterministic.
    pub fn service_backends_when_idle(&self) {
        let pci = self.pci.clone();
        self.vm
            .set_idle_hook(Arc::new(move || service_backends(&pci)));
    }

    /// Creates vCPU `id` running `program`, in the driver's 64-bit boot state
    /// (identity page tables, boot GDT, entry at `KERNEL_START`).
    pub fn boot_vcpu(&self, id: u32, program: GuestProgram) -> Result<SimVcpu, MachineError> {
        self.vm.set_program(id, program);
        let vcpu = self.vm.create_sim_vcpu(id);
        let tables = paging::build(
            &paging::boot_identity_map(),
            TableArea {
                base: PAGE_TABLES_START,
                pages: PAGE_TABLES_PAGES,
            },
        )
        .map_err(|e| MachineError::Boot(e.to_string()))?;
        for (addr, bytes) in tables.page_bytes() {
            self.memory
                .write_slice(&bytes, GuestAddress(addr))
                .map_err(|e| MachineError::Boot(e.to_string()))?;
        }
        let reset = vcpu.get_sregs()?;
        let state = boot_cpu_state(
            EntryMode::Long64 {
                cr3: tables.cr3,
                zero_page: ZERO_PAGE_START,
            },
            KERNEL_START,
            &reset,
        );
        self.memory
            .write_slice(&state.gdt_bytes(), GuestAddress(state.sregs.gdt.base))
            .map_err(|e| MachineError::Boot(e.to_string()))?;
        vcpu.set_cpuid(&crate::world::supported_cpuid())?;
        vcpu.set_msrs(&boot_msrs())?;
        vcpu.set_sregs(&state.sregs)?;
        vcpu.set_regs(&state.regs)?;
        vcpu.set_fpu(&boot_fpu())?;
        Ok(vcpu)
    }

    /// The allocator the guest driver should use (RAM above 16 MiB).
    pub fn guest_heap(&self) -> GuestAlloc {
        let end = self.memory.last_addr().0 + 1;
        GuestAlloc::new(GUEST_HEAP_START, end)
    }
}

/// Lets every device of `pci` with a readable backend fd service it.
pub fn service_backends(pci: &Mutex<PciRoot>) {
    let fds: Vec<(u8, RawFd)> = lock(pci).backend_fds();
    for (slot, fd) in fds {
        if crate::fd::readable(fd) {
            lock(pci).process_backend(slot);
        }
    }
}
