//! The register state of the boot vCPU: segments, control registers, general
//! registers and the FPU, for the entry mode the kernel needs.
//!
//! Two entry modes exist. [`EntryMode::Long64`] is the Linux 64-bit boot protocol:
//! long mode with an identity map, flat segments, `%rsi` = zero page. [`EntryMode::Pvh32`]
//! is the PVH entry of ELF kernels: flat 32-bit protected mode without paging,
//! `%ebx` = `hvm_start_info`. The state is pure data here; `colinux_sim::arch`
//! checks it against architectural consistency rules.

use super::gdt::{gdt_entry, segment_from_gdt, CODE32_FLAGS, CODE64_FLAGS, DATA_FLAGS, TSS_FLAGS};
use crate::arch::x86_64::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER};
use crate::hypervisor::{FpuState, SpecialRegisters, StandardRegisters};

/// CR0 protection enable.
pub const CR0_PE: u64 = 1 << 0;
/// CR0 monitor coprocessor.
pub const CR0_MP: u64 = 1 << 1;
/// CR0 extension type (always 1).
pub const CR0_ET: u64 = 1 << 4;
/// CR0 numeric error.
pub const CR0_NE: u64 = 1 << 5;
/// CR0 write protect.
pub const CR0_WP: u64 = 1 << 16;
/// CR0 paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4 physical address extension.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1, always set.
pub const RFLAGS_FIXED: u64 = 1 << 1;

/// GDT selectors of the boot GDT.
pub const SEL_CODE: u16 = 0x08;
/// Data selector.
pub const SEL_DATA: u16 = 0x10;
/// TSS selector.
pub const SEL_TSS: u16 = 0x18;

/// How the kernel is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit boot protocol: long mode, paging on; `rsi` = zero page.
    Long64 {
        /// CR3: physical address of the PML4.
        cr3: u64,
        /// Physical address of `struct boot_params`.
        zero_page: u64,
    },
    /// PVH: 32-bit protected mode, paging off; `rbx` = `hvm_start_info`.
    Pvh32 {
        /// Physical address of `struct hvm_start_info`.
        start_info: u64,
    },
}

/// Everything a boot vCPU is set to before its first run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootCpuState {
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: StandardRegisters,
    /// Segments, control and descriptor-table registers.
    pub sregs: SpecialRegisters,
    /// The GDT the segment caches come from (to be written at `sregs.gdt.base`).
    pub gdt: [u64; 4],
}

/// The boot GDT for `mode`: null, code, data, TSS.
pub fn boot_gdt(mode: EntryMode) -> [u64; 4] {
    let code = match mode {
        EntryMode::Long64 { .. } => CODE64_FLAGS,
        EntryMode::Pvh32 { .. } => CODE32_FLAGS,
    };
    [
        0,
        gdt_entry(code, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0x67),
    ]
}

/// Builds the boot state entering at `entry` in `mode`, starting from the
/// vCPU's reset special registers `reset` (which carry e.g. the APIC base).
pub fn boot_cpu_state(mode: EntryMode, entry: u64, reset: &SpecialRegisters) -> BootCpuState {
    let gdt = boot_gdt(mode);
    let mut sregs = *reset;
    let code = segment_from_gdt(gdt[1], SEL_CODE);
    let data = segment_from_gdt(gdt[2], SEL_DATA);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[3], SEL_TSS);
    sregs.ldt = SpecialRegisters::default().ldt;
    sregs.ldt.unusable = 1;
    sregs.ldt.type_ = 2;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 0;
    sregs.cr2 = 0;
    sregs.cr8 = 0;

    let mut regs = StandardRegisters {
        rflags: RFLAGS_FIXED,
        rip: entry,
        ..Default::default()
    };
    match mode {
        EntryMode::Long64 { cr3, zero_page } => {
            sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
            sregs.cr3 = cr3;
            sregs.cr4 = CR4_PAE;
            sregs.efer = EFER_LME | EFER_LMA;
            regs.rsi = zero_page;
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
        }
        EntryMode::Pvh32 { start_info } => {
            sregs.cr0 = CR0_PE | CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
            regs.rbx = start_info;
        }
    }
    BootCpuState { regs, sregs, gdt }
}

/// The initial x87/SSE state: FCW 0x37f, MXCSR 0x1f80 (the architectural reset values).
pub fn boot_fpu() -> FpuState {
    FpuState {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

impl BootCpuState {
    /// The GDT as bytes to write at `sregs.gdt.base`.
    pub fn gdt_bytes(&self) -> Vec<u8> {
        self.gdt.iter().flat_map(|e| e.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_state() {
        let s = boot_cpu_state(
            EntryMode::Long64 {
                cr3: 0x9000,
                zero_page: 0x7000,
            },
            0x100200,
            &SpecialRegisters::default(),
        );
        assert_eq!(s.regs.rip, 0x100200);
        assert_eq!(s.regs.rsi, 0x7000);
        assert_eq!(s.sregs.cs.l, 1);
        assert_eq!(s.sregs.cs.db, 0);
        assert_eq!(s.sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.sregs.tr.type_, 0xb);
    }
}
