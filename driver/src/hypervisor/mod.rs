//! The hypervisor abstraction: `Hypervisor` → `Vm` → `Vcpu`, and the [`VmExit`]
//! a vCPU returns when the guest needs the monitor.
//!
//! The daemon builds a machine only through these traits, so the KVM backend
//! ([`kvm`]) and the software model in the `sim` crate are interchangeable
//! (and a Windows Hypervisor Platform backend can slot in later). The register,
//! segment, FPU, MSR, CPUID and LAPIC types are the `kvm-bindings` structures: they
//! are plain `#[repr(C)]` data, widely understood, and every backend can fill them.
//!
//! Modelled on cloud-hypervisor's `hypervisor` crate, kept deliberately small.

pub mod kvm;

use std::io;
use std::sync::Arc;

pub use kvm_bindings::{
    kvm_cpuid_entry2 as CpuIdEntry, kvm_fpu as FpuState, kvm_lapic_state as LapicState,
    kvm_msr_entry as MsrEntry, kvm_regs as StandardRegisters, kvm_segment as SegmentRegister,
    kvm_sregs as SpecialRegisters,
};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Errors reported by a hypervisor backend.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// An operation on the hypervisor failed; `op` names it (e.g. `KVM_SET_SREGS`).
    #[error("{op} failed: {source}")]
    Op {
        /// The operation that failed.
        op: &'static str,
        /// The OS error behind it.
        #[source]
        source: io::Error,
    },
    /// The backend cannot do what was asked (missing capability, bad argument).
    #[error("{0}")]
    Unsupported(String),
}

impl HypervisorError {
    /// Wraps an OS error with the name of the operation that produced it.
    pub fn op(op: &'static str, source: impl Into<io::Error>) -> Self {
        Self::Op {
            op,
            source: source.into(),
        }
    }
}

/// Result of a hypervisor operation.
pub type Result<T> = std::result::Result<T, HypervisorError>;

/// Why a vCPU stopped running guest code and returned to the monitor.
///
/// Data-carrying exits borrow the backend's exit buffer: for `IoIn` and
/// `MmioRead` the monitor fills `data` before calling [`Vcpu::run`] again, which
/// completes the guest's instruction with that value.
#[derive(Debug)]
pub enum VmExit<'a> {
    /// `in` from `port`; fill `data` (1, 2 or 4 bytes) with the value read.
    IoIn {
        /// I/O port address.
        port: u16,
        /// Buffer receiving the value.
        data: &'a mut [u8],
    },
    /// `out` of `data` to `port`.
    IoOut {
        /// I/O port address.
        port: u16,
        /// The bytes written, little-endian.
        data: &'a [u8],
    },
    /// A load from guest-physical `addr` that no RAM backs; fill `data`.
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// Buffer receiving the value.
        data: &'a mut [u8],
    },
    /// A store of `data` to guest-physical `addr` that no RAM backs.
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// The bytes written, little-endian.
        data: &'a [u8],
    },
    /// The vCPU executed `hlt` and the hypervisor wants the monitor to decide
    /// (with an in-kernel irqchip KVM handles `hlt` itself and this is rare).
    Halt,
    /// The guest triple-faulted (or otherwise shut the CPU down).
    Shutdown,
    /// The guest asked for a system reset (e.g. PSCI/ACPI reset as a system event).
    Reset,
    /// The guest asked to power the machine off.
    Poweroff,
    /// The run was interrupted by a signal before or during guest execution
    /// (`EINTR`); the monitor checks its stop flags and runs again.
    Interrupted,
    /// The hardware refused to enter the guest; `reason` is hardware-specific.
    FailEntry {
        /// Hardware entry failure reason (VMX exit reason / SVM exit code).
        reason: u64,
    },
    /// The hypervisor hit an internal error emulating the guest.
    InternalError {
        /// Backend-specific sub-error code.
        suberror: u32,
    },
    /// Any other exit; `0` describes it for diagnostics.
    Unknown(String),
}

/// Where an ioeventfd listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEventAddress {
    /// A port I/O address.
    Pio(u64),
    /// A guest-physical MMIO address.
    Mmio(u64),
}

/// Which writes an ioeventfd reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMatch {
    /// Any write of any width.
    Any,
    /// Only 2-byte writes of this value (e.g. a virtio queue index).
    U16(u16),
    /// Only 4-byte writes of this value.
    U32(u32),
}

/// One entry of the interrupt routing table (GSI → irqchip pin or MSI message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsiRoute {
    /// GSI `gsi` drives `pin` of irqchip `chip` (0 = PIC master, 1 = PIC slave, 2 = IOAPIC).
    Irqchip {
        /// Global system interrupt number.
        gsi: u32,
        /// Irqchip id.
        chip: u32,
        /// Pin on that chip.
        pin: u32,
    },
    /// GSI `gsi` sends the MSI message (`address`, `data`).
    Msi {
        /// Global system interrupt number.
        gsi: u32,
        /// MSI address.
        address: u64,
        /// MSI data.
        data: u32,
    },
}

/// A hypervisor on this host: creates VMs and says what the virtual CPU supports.
pub trait Hypervisor: Send + Sync {
    /// Short name of the backend, e.g. `"kvm"` or `"sim"`.
    fn name(&self) -> &'static str;
    /// Creates an empty VM.
    fn create_vm(&self) -> Result<Arc<dyn Vm>>;
    /// The CPUID leaves the backend can expose to a guest, before the monitor's
    /// own adjustments (topology, paravirtual leaves).
    fn supported_cpuid(&self) -> Result<Vec<CpuIdEntry>>;
}

/// A virtual machine: memory, interrupt controllers and vCPUs.
pub trait Vm: Send + Sync {
    /// Makes all regions of `memory` guest RAM at their guest-physical addresses.
    /// The VM keeps a clone of `memory`, so the mapping outlives every vCPU.
    fn set_memory(&self, memory: &GuestMemoryMmap) -> Result<()>;
    /// Creates the in-kernel interrupt controllers (PIC pair, IOAPIC, local APICs).
    /// Call before creating vCPUs.
    fn create_irqchip(&self) -> Result<()>;
    /// Creates the in-kernel i8254 PIT on ports 0x40-0x43 (and the speaker port 0x61).
    fn create_pit(&self) -> Result<()>;
    /// Creates vCPU `id` (its initial APIC id is `id`).
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>>;
    /// Injects one MSI message (used for MSI-X table entries).
    fn signal_msi(&self, address: u64, data: u32) -> Result<()>;
    /// Drives legacy interrupt line `irq` (a GSI) to `level`.
    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()>;
    /// Replaces the GSI routing table (include the irqchip routes you still need).
    fn set_gsi_routes(&self, routes: &[GsiRoute]) -> Result<()>;
    /// Writing to `fd` raises GSI `gsi` (edge) without a monitor round trip.
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    /// Undoes [`Vm::register_irqfd`].
    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    /// A guest write to `addr` (matching `datamatch`) signals `fd`
    /// instead of exiting to the monitor.
    fn register_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()>;
    /// Undoes [`Vm::register_ioevent`].
    fn unregister_ioevent(
        &self,
        fd: &EventFd,
        addr: IoEventAddress,
        datamatch: DataMatch,
    ) -> Result<()>;
}

/// One virtual CPU. Lives on its own thread while it runs.
pub trait Vcpu: Send {
    /// The vCPU index (= initial APIC id).
    fn id(&self) -> u32;
    /// General-purpose registers, RIP and RFLAGS.
    fn get_regs(&self) -> Result<StandardRegisters>;
    /// Sets general-purpose registers, RIP and RFLAGS.
    fn set_regs(&self, regs: &StandardRegisters) -> Result<()>;
    /// Segment, control and descriptor-table registers, EFER, APIC base.
    fn get_sregs(&self) -> Result<SpecialRegisters>;
    /// Sets segment, control and descriptor-table registers, EFER, APIC base.
    fn set_sregs(&self, sregs: &SpecialRegisters) -> Result<()>;
    /// The x87/SSE state.
    fn get_fpu(&self) -> Result<FpuState>;
    /// Sets the x87/SSE state.
    fn set_fpu(&self, fpu: &FpuState) -> Result<()>;
    /// Writes model-specific registers; all must be accepted.
    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<()>;
    /// Reads the MSRs whose indices are given.
    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<MsrEntry>>;
    /// Sets the CPUID leaves the guest sees.
    fn set_cpuid(&self, entries: &[CpuIdEntry]) -> Result<()>;
    /// The local APIC register page.
    fn get_lapic(&self) -> Result<LapicState>;
    /// Sets the local APIC register page.
    fn set_lapic(&self, lapic: &LapicState) -> Result<()>;
    /// Runs guest code until the next exit the monitor must see.
    fn run(&mut self) -> Result<VmExit<'_>>;
}
