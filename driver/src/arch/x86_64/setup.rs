//! Putting it together: everything written into guest memory before the first
//! instruction, and the state every vCPU starts with.

use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::acpi::{self, AcpiConfig, AcpiTables};
use super::boot::cmdline::load_cmdline;
use super::boot::error::LoadError;
use super::boot::initrd::{load_initrd, LoadedInitrd};
use super::boot::kernel::{load_kernel, KernelEntry};
use super::boot::pvh::write_pvh_start_info;
use super::boot::zero_page::{
    build_zero_page, honour_nokaslr, set_text_screen, write_zero_page, VgaTextMode, ZeroPageConfig,
};
use super::cpu::brand::{brand_string_leaves, guest_brand, host_brand};
use super::cpu::cpuid::vcpu_cpuid;
use super::cpu::lapic::configure_lapic;
use super::cpu::{boot_cpu_state, boot_fpu, boot_msrs, BootCpuState, EntryMode};
use super::layout::{
    mmio64_window, MemoryLayout, BIOS_AREA_START, CMDLINE_MAX_SIZE, PAGE_TABLES_PAGES,
    PAGE_TABLES_START, ZERO_PAGE_START,
};
use super::mptable::{self, MPTABLE_START};
use super::paging::{self, PagingError, TableArea};
use super::reset_vector::{reset_vector_stub, RESET_VECTOR};
use crate::hypervisor::{CpuIdEntry, HypervisorError, Vcpu};

/// Errors preparing the guest.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Loading an image failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The page tables could not be built.
    #[error("boot page tables: {0}")]
    Paging(#[from] PagingError),
    /// Writing a boot structure failed.
    #[error("writing {0} to guest memory failed")]
    Write(&'static str),
    /// The hypervisor refused a vCPU setting.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Too many vCPUs for the tables.
    #[error("{0} vCPUs requested; 1 to 254 are supported")]
    Cpus(u32),
}

/// What the boot images are.
#[derive(Debug, Clone)]
pub struct BootImages<'a> {
    /// The kernel (bzImage or ELF vmlinux).
    pub kernel: &'a Path,
    /// The initrd, if any.
    pub initrd: Option<&'a Path>,
    /// The complete kernel command line.
    pub cmdline: &'a str,
    /// Serial ports beside COM1 to describe in the DSDT
    /// ([`AcpiConfig::extra_com`]).
    pub extra_com: u8,
    /// The VGA text screen to describe to the kernel (bzImage boots only:
    /// the PVH entry has no place for it).
    pub text_screen: Option<VgaTextMode>,
}

/// The prepared guest: how the boot vCPU starts, and what was placed where.
#[derive(Debug, Clone)]
pub struct PreparedGuest {
    /// Entry mode and state of the boot vCPU (without its reset-time sregs merged).
    pub entry_mode: EntryMode,
    /// Entry point.
    pub entry: u64,
    /// Where the initrd went.
    pub initrd: Option<LoadedInitrd>,
    /// The ACPI tables.
    pub acpi: AcpiTables,
}

/// Loads kernel, initrd and command line, and writes the zero page (or PVH start
/// info), ACPI tables, boot page tables and GDT into `mem`.
pub fn prepare_guest(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    images: &BootImages<'_>,
    cpus: u32,
) -> Result<PreparedGuest, SetupError> {
    if cpus == 0 || cpus > 254 {
        return Err(SetupError::Cpus(cpus));
    }
    let kernel = load_kernel(mem, images.kernel)?;
    let (max_cmdline, initrd_max) = match &kernel.entry {
        KernelEntry::Linux64 { header, .. } => (
            if header.cmdline_size == 0 {
                255
            } else {
                header.cmdline_size as usize
            },
            u64::from(header.initrd_addr_max),
        ),
        KernelEntry::Pvh { .. } => (CMDLINE_MAX_SIZE as usize - 1, 0xffff_ffff),
    };
    load_cmdline(mem, images.cmdline, max_cmdline)?;
    let initrd = match images.initrd {
        Some(p) => Some(load_initrd(mem, layout, p, initrd_max, kernel.end)?),
        None => None,
    };
    let acpi = acpi::build(
        &AcpiConfig {
            cpus: cpus as u8,
            ioapic_id: 0,
            mmio64: Some(mmio64_window(layout)),
            extra_com: images.extra_com,
        },
        BIOS_AREA_START,
    );
    mem.write_slice(&acpi.blob, GuestAddress(acpi.base))
        .map_err(|_| SetupError::Write("ACPI tables"))?;
    mem.write_slice(&reset_vector_stub(), GuestAddress(RESET_VECTOR))
        .map_err(|_| SetupError::Write("reset vector"))?;
    let mp = mptable::build(cpus as u8, 0, MPTABLE_START);
    mem.write_slice(&mp, GuestAddress(MPTABLE_START))
        .map_err(|_| SetupError::Write("MP table"))?;
    let e820 = layout.e820();
    let (entry_mode, entry) = match kernel.entry {
        KernelEntry::Linux64 { entry, header } => {
            let mut zp = build_zero_page(&ZeroPageConfig {
                header,
                cmdline_len: images.cmdline.len(),
                initrd,
                e820: &e820,
                rsdp: Some(acpi.rsdp()),
            });
            zp.hdr.loadflags = honour_nokaslr(zp.hdr.loadflags, images.cmdline);
            if let Some(mode) = images.text_screen {
                set_text_screen(&mut zp, mode);
            }
            write_zero_page(mem, &zp)?;
            let tables = paging::build(
                &paging::boot_identity_map(),
                TableArea {
                    base: PAGE_TABLES_START,
                    pages: PAGE_TABLES_PAGES,
                },
            )?;
            for (addr, bytes) in tables.page_bytes() {
                mem.write_slice(&bytes, GuestAddress(addr))
                    .map_err(|_| SetupError::Write("page tables"))?;
            }
            (
                EntryMode::Long64 {
                    cr3: tables.cr3,
                    zero_page: ZERO_PAGE_START,
                },
                entry,
            )
        }
        KernelEntry::Pvh { entry } => {
            if images.text_screen.is_some() {
                tracing::warn!(
                    "the kernel is an ELF image booted through PVH, which has no place for \
                     the screen's description: its virtual terminals (tty1..) stay blank; \
                     boot a bzImage (vmlinuz) for the VGA text screen"
                );
            }
            let start_info = write_pvh_start_info(mem, &e820, initrd, Some(acpi.rsdp()))?;
            (EntryMode::Pvh32 { start_info }, entry)
        }
    };
    Ok(PreparedGuest {
        entry_mode,
        entry,
        initrd,
        acpi,
    })
}

/// Configures vCPU `vcpu` (one of `count`): CPUID (with the host's brand
/// string, or coLinux-rs's own), MSRs, LAPIC LINT pins; the
/// boot vCPU (id 0) also gets the entry state, GDT and FPU. Application
/// processors stay in wait-for-SIPI; the kernel starts them.
pub fn configure_vcpu(
    vcpu: &dyn Vcpu,
    mem: &GuestMemoryMmap,
    supported_cpuid: &[CpuIdEntry],
    count: u32,
    guest: &PreparedGuest,
) -> Result<Option<BootCpuState>, SetupError> {
    let id = vcpu.id();
    let mut cpuid = vcpu_cpuid(supported_cpuid, id, count);
    brand_string_leaves(&mut cpuid, &guest_brand(host_brand()));
    vcpu.set_cpuid(&cpuid)?;
    vcpu.set_msrs(&boot_msrs())?;
    let mut lapic = vcpu.get_lapic()?;
    configure_lapic(&mut lapic);
    vcpu.set_lapic(&lapic)?;
    if id != 0 {
        return Ok(None);
    }
    let reset = vcpu.get_sregs()?;
    let state = boot_cpu_state(guest.entry_mode, guest.entry, &reset);
    mem.write_slice(&state.gdt_bytes(), GuestAddress(state.sregs.gdt.base))
        .map_err(|_| SetupError::Write("GDT"))?;
    mem.write_obj(0u64, GuestAddress(state.sregs.idt.base))
        .map_err(|_| SetupError::Write("IDT"))?;
    vcpu.set_sregs(&state.sregs)?;
    vcpu.set_regs(&state.regs)?;
    vcpu.set_fpu(&boot_fpu())?;
    Ok(Some(state))
}
