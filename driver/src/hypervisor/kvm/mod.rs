//! The KVM backend of the [hypervisor abstraction](crate::hypervisor), on `kvm-ioctls`.
//!
//! `KVM_RUN` is the world switch: the host kernel saves the host context, enters the
//! guest with hardware assistance (VT-x / AMD-V) and returns here on exits that need
//! the monitor (port I/O, MMIO, shutdown, signals).

mod probe;

pub use probe::{probe_host, HostSupport};

use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_msi, kvm_pit_config, kvm_userspace_memory_region, CpuId,
    KvmIrqRouting, Msrs, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Cap, Kvm, NoDatamatch, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestMemory, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::hypervisor::{
    CpuIdEntry, DataMatch, FpuState, GsiRoute, Hypervisor, HypervisorError, IoEventAddress,
    LapicState, MsrEntry, Result, SpecialRegisters, StandardRegisters, Vcpu, Vm, VmExit,
};

/// Names the KVM operation an error came from ([`HypervisorError::op`]).
trait KvmOp<T> {
    fn op(self, name: &'static str) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> KvmOp<T> for std::result::Result<T, E> {
    fn op(self, name: &'static str) -> Result<T> {
        self.map_err(|e| HypervisorError::op(name, e))
    }
}

/// Guest-physical address KVM needs for the (Intel) TSS: three pages just below
/// the 4 GiB boundary, inside the PCI hole where nothing else lives.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// The host's `/dev/kvm`.
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Opens `/dev/kvm` and checks the capabilities the monitor relies on.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().op("open /dev/kvm")?;
        for (cap, name) in [
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::SignalMsi, "KVM_CAP_SIGNAL_MSI"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
            (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(HypervisorError::Unsupported(format!(
                    "/dev/kvm lacks {name}, which the monitor needs"
                )));
            }
        }
        Ok(Self { kvm })
    }

    /// How many vCPUs KVM recommends per VM.
    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }
}

impl Hypervisor for KvmHypervisor {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn create_vm(&self) -> Result<Arc<dyn Vm>> {
        let fd = self.kvm.create_vm().op("KVM_CREATE_VM")?;
        fd.set_tss_address(KVM_TSS_ADDRESS as usize)
            .op("KVM_SET_TSS_ADDR")?;
        Ok(Arc::new(KvmVm {
            fd,
            memory: Mutex::new(None),
        }))
    }

    /// `KVM_GET_SUPPORTED_CPUID`, plus the TSC-deadline timer when KVM has
    /// it: the in-kernel local APIC emulates that mode, but KVM leaves
    /// advertising it to userspace (see [`with_tsc_deadline`]).
    fn supported_cpuid(&self) -> Result<Vec<CpuIdEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .op("KVM_GET_SUPPORTED_CPUID")?;
        let mut entries = cpuid.as_slice().to_vec();
        if self.kvm.check_extension(Cap::TscDeadlineTimer) {
            with_tsc_deadline(&mut entries);
        }
        Ok(entries)
    }
}

/// CPUID leaf 1 ECX: the local APIC timer has TSC-deadline mode.
pub const CPUID1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Sets the TSC-deadline bit in leaf 1. A guest kernel that sees it programs
/// its timer by deadline and skips the ~100 ms busy-wait calibration of the
/// local APIC timer at boot.
pub fn with_tsc_deadline(entries: &mut [CpuIdEntry]) {
    for e in entries.iter_mut().filter(|e| e.function == 1) {
        e.ecx |= CPUID1_ECX_TSC_DEADLINE;
    }
}

/// A KVM virtual machine.
pub struct KvmVm {
    fd: VmFd,
    /// Keeps the guest RAM mapped for as long as KVM may touch it.
    memory: Mutex<Option<GuestMemoryMmap>>,
}

impl Vm for KvmVm {
    fn set_memory(&self, memory: &GuestMemoryMmap) -> Result<()> {
        for (slot, region) in memory.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| HypervisorError::Unsupported(format!("guest region: {e}")))?;
            let mr = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the range [host, host + len) is a live mapping owned by
            // `memory`; a clone of it is stored in `self.memory` below, so the
            // mapping stays valid as long as this VM (and thus KVM's use of it).
            unsafe { self.fd.set_user_memory_region(mr) }.op("KVM_SET_USER_MEMORY_REGION")?;
        }
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = Some(memory.clone());
        Ok(())
    }

    fn create_irqchip(&self) -> Result<()> {
        self.fd.create_irq_chip().op("KVM_CREATE_IRQCHIP")
    }

    fn create_pit(&self) -> Result<()> {
        let config = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(config).op("KVM_CREATE_PIT2")
    }

    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let fd = self.fd.create_vcpu(id as u64).op("KVM_CREATE_VCPU")?;
        Ok(Box::new(KvmVcpu { id, fd }))
    }

    fn signal_msi(&self, address: u64, data: u32) -> Result<()> {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        self.fd.signal_msi(msi).map(|_| ()).op("KVM_SIGNAL_MSI")
    }

    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()> {
        self.fd.set_irq_line(irq, level).op("KVM_IRQ_LINE")
    }

    fn set_gsi_routes(&self, routes: &[GsiRoute]) -> Result<()> {
        let mut table = KvmIrqRouting::new(0)
            .map_err(|e| HypervisorError::Unsupported(format!("routing table: {e:?}")))?;
        for route in routes {
            let mut entry = kvm_irq_routing_entry::default();
            match *route {
                GsiRoute::Irqchip { gsi, chip, pin } => {
                    entry.gsi = gsi;
                    entry.type_ = KVM_IRQ_ROUTING_IRQCHIP;
                    entry.u.irqchip.irqchip = chip;
                    entry.u.irqchip.pin = pin;
                }
                GsiRoute::Msi { gsi, address, data } => {
                    entry.gsi = gsi;
                    entry.type_ = KVM_IRQ_ROUTING_MSI;
                    entry.u.msi.address_lo = address as u32;
                    entry.u.msi.address_hi = (address >> 32) as u32;
                    entry.u.msi.data = data;
                }
            }
            table
                .push(entry)
                .map_err(|e| HypervisorError::Unsupported(format!("routing table: {e:?}")))?;
        }
        self.fd.set_gsi_routing(&table).op("KVM_SET_GSI_ROUTING")
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd.register_irqfd(fd, gsi).op("KVM_IRQFD")
    }

    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd.unregister_irqfd(fd, gsi).op("KVM_IRQFD (deassign)")
    }

    fn register_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()> {
        self.ioevent(fd, addr, datamatch, true)
    }

    fn unregister_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()> {
        self.ioevent(fd, addr, datamatch, false)
    }
}

impl KvmVm {
    /// `KVM_IOEVENTFD`: assigns (`assign`) or deassigns `fd` at `addr`.
    fn ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
        assign: bool,
    ) -> Result<()> {
        fn call<T: Into<u64>>(
            vm: &VmFd,
            fd: &EventFd,
            addr: &kvm_ioctls::IoEventAddress,
            datamatch: T,
            assign: bool,
        ) -> std::result::Result<(), kvm_ioctls::Error> {
            if assign {
                vm.register_ioevent(fd, addr, datamatch)
            } else {
                vm.unregister_ioevent(fd, addr, datamatch)
            }
        }
        let addr = kvm_addr(addr);
        match datamatch {
            DataMatch::Any => call(&self.fd, fd, &addr, NoDatamatch, assign),
            DataMatch::U16(v) => call(&self.fd, fd, &addr, v, assign),
            DataMatch::U32(v) => call(&self.fd, fd, &addr, v, assign),
        }
        .op(if assign {
            "KVM_IOEVENTFD"
        } else {
            "KVM_IOEVENTFD (deassign)"
        })
    }
}

fn kvm_addr(addr: IoEventAddress) -> kvm_ioctls::IoEventAddress {
    match addr {
        IoEventAddress::Pio(a) => kvm_ioctls::IoEventAddress::Pio(a),
        IoEventAddress::Mmio(a) => kvm_ioctls::IoEventAddress::Mmio(a),
    }
}

/// A KVM vCPU.
pub struct KvmVcpu {
    id: u32,
    fd: VcpuFd,
}

impl Vcpu for KvmVcpu {
    fn id(&self) -> u32 {
        self.id
    }

    fn get_regs(&self) -> Result<StandardRegisters> {
        self.fd.get_regs().op("KVM_GET_REGS")
    }

    fn set_regs(&self, regs: &StandardRegisters) -> Result<()> {
        self.fd.set_regs(regs).op("KVM_SET_REGS")
    }

    fn get_sregs(&self) -> Result<SpecialRegisters> {
        self.fd.get_sregs().op("KVM_GET_SREGS")
    }

    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()> {
        self.fd.set_sregs(sregs).op("KVM_SET_SREGS")
    }

    fn get_fpu(&self) -> Result<FpuState> {
        self.fd.get_fpu().op("KVM_GET_FPU")
    }

    fn set_fpu(&self, fpu: &FpuState) -> Result<()> {
        self.fd.set_fpu(fpu).op("KVM_SET_FPU")
    }

    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<()> {
        let list = Msrs::from_entries(msrs)
            .map_err(|e| HypervisorError::Unsupported(format!("MSR list: {e:?}")))?;
        let written = self.fd.set_msrs(&list).op("KVM_SET_MSRS")?;
        if written != msrs.len() {
            let bad = msrs.get(written).map(|m| m.index).unwrap_or_default();
            return Err(HypervisorError::Unsupported(format!(
                "KVM_SET_MSRS accepted {written} of {} MSRs; MSR {bad:#x} was refused",
                msrs.len()
            )));
        }
        Ok(())
    }

    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<MsrEntry>> {
        let entries: Vec<MsrEntry> = indices
            .iter()
            .map(|&index| MsrEntry {
                index,
                ..Default::default()
            })
            .collect();
        let mut list = Msrs::from_entries(&entries)
            .map_err(|e| HypervisorError::Unsupported(format!("MSR list: {e:?}")))?;
        let read = self.fd.get_msrs(&mut list).op("KVM_GET_MSRS")?;
        Ok(list.as_slice()[..read].to_vec())
    }

    fn set_cpuid(&self, entries: &[CpuIdEntry]) -> Result<()> {
        let cpuid = CpuId::from_entries(entries)
            .map_err(|e| HypervisorError::Unsupported(format!("CPUID list: {e:?}")))?;
        self.fd.set_cpuid2(&cpuid).op("KVM_SET_CPUID2")
    }

    fn get_lapic(&self) -> Result<LapicState> {
        self.fd.get_lapic().op("KVM_GET_LAPIC")
    }

    fn set_lapic(&self, lapic: &LapicState) -> Result<()> {
        self.fd.set_lapic(lapic).op("KVM_SET_LAPIC")
    }

    fn run(&mut self) -> Result<VmExit<'_>> {
        // The kvm_run page is mapped for the vCPU's lifetime; keep a raw pointer so
        // the internal-error sub-code can be read while the exit borrows `fd`.
        let run_page: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        match self.fd.run() {
            Ok(exit) => Ok(match exit {
                VcpuExit::IoIn(port, data) => VmExit::IoIn { port, data },
                VcpuExit::IoOut(port, data) => VmExit::IoOut { port, data },
                VcpuExit::MmioRead(addr, data) => VmExit::MmioRead { addr, data },
                VcpuExit::MmioWrite(addr, data) => VmExit::MmioWrite { addr, data },
                VcpuExit::Hlt => VmExit::Halt,
                VcpuExit::Shutdown => VmExit::Shutdown,
                VcpuExit::Intr => VmExit::Interrupted,
                VcpuExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_RESET => VmExit::Reset,
                VcpuExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_SHUTDOWN => {
                    VmExit::Poweroff
                }
                VcpuExit::FailEntry(reason, _cpu) => VmExit::FailEntry { reason },
                VcpuExit::InternalError => {
                    // SAFETY: `run_page` points at the live kvm_run mapping, and KVM
                    // filled its `internal` member for this exit reason.
                    let suberror = unsafe { (*run_page).__bindgen_anon_1.internal.suberror };
                    VmExit::InternalError { suberror }
                }
                other => VmExit::Unknown(format!("{other:?}")),
            }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VmExit::Interrupted)
            }
            Err(e) => Err(HypervisorError::op("KVM_RUN", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_deadline_goes_to_leaf_1_only() {
        let mut e = vec![
            CpuIdEntry {
                function: 1,
                ecx: 1,
                ..Default::default()
            },
            CpuIdEntry {
                function: 7,
                ..Default::default()
            },
        ];
        with_tsc_deadline(&mut e);
        assert_eq!(e[0].ecx, 1 | CPUID1_ECX_TSC_DEADLINE);
        assert_eq!(e[1].ecx, 0);
    }
}
