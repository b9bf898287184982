//! The boot CPU state: segments, control registers, MSRs, FPU, CPUID and LAPIC.
//!
//! Two entry modes exist. [`EntryMode::Long64`] is the Linux 64-bit boot protocol:
//! long mode with an identity map, flat segments, `%rsi` = zero page. [`EntryMode::Pvh32`]
//! is the PVH entry of ELF kernels: flat 32-bit protected mode without paging,
//! `%ebx` = `hvm_start_info`. The state is pure data here; `colinux_sim::arch`
//! checks it against architectural consistency rules.

use super::gdt::{gdt_entry, segment_from_gdt, CODE32_FLAGS, CODE64_FLAGS, DATA_FLAGS, TSS_FLAGS};
use crate::hypervisor::{
    CpuIdEntry, FpuState, LapicState, MsrEntry, SpecialRegisters, StandardRegisters,
};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER};

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

/// MSR indices the boot state sets.
pub mod msr {
    /// IA32_SYSENTER_CS.
    pub const SYSENTER_CS: u32 = 0x174;
    /// IA32_SYSENTER_ESP.
    pub const SYSENTER_ESP: u32 = 0x175;
    /// IA32_SYSENTER_EIP.
    pub const SYSENTER_EIP: u32 = 0x176;
    /// IA32_STAR.
    pub const STAR: u32 = 0xc000_0081;
    /// IA32_LSTAR.
    pub const LSTAR: u32 = 0xc000_0082;
    /// IA32_CSTAR.
    pub const CSTAR: u32 = 0xc000_0083;
    /// IA32_FMASK.
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    /// IA32_KERNEL_GS_BASE.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// IA32_TSC.
    pub const TSC: u32 = 0x10;
    /// IA32_MISC_ENABLE.
    pub const MISC_ENABLE: u32 = 0x1a0;
    /// IA32_MTRR_DEF_TYPE.
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
}

/// The boot MSRs: syscall MSRs cleared, fast strings on, MTRRs enabled with
/// write-back as the default memory type.
pub fn boot_msrs() -> Vec<MsrEntry> {
    let e = |index, data| MsrEntry {
        index,
        data,
        ..Default::default()
    };
    vec![
        e(msr::SYSENTER_CS, 0),
        e(msr::SYSENTER_ESP, 0),
        e(msr::SYSENTER_EIP, 0),
        e(msr::STAR, 0),
        e(msr::CSTAR, 0),
        e(msr::KERNEL_GS_BASE, 0),
        e(msr::SYSCALL_MASK, 0),
        e(msr::LSTAR, 0),
        e(msr::TSC, 0),
        e(msr::MISC_ENABLE, 1),
        e(msr::MTRR_DEF_TYPE, (1 << 11) | 6),
    ]
}

/// LAPIC register offset of LVT LINT0.
pub const APIC_LVT0: usize = 0x350;
/// LAPIC register offset of LVT LINT1.
pub const APIC_LVT1: usize = 0x360;
/// LVT delivery mode ExtINT (the 8259 PIC's output).
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// LVT delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

fn lapic_reg(lapic: &LapicState, off: usize) -> u32 {
    let b: Vec<u8> = lapic.regs[off..off + 4].iter().map(|&c| c as u8).collect();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn set_lapic_reg(lapic: &mut LapicState, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        lapic.regs[off + i] = *b as _;
    }
}

/// Reads LAPIC register `off` (e.g. [`APIC_LVT0`]).
pub fn read_lapic(lapic: &LapicState, off: usize) -> u32 {
    lapic_reg(lapic, off)
}

/// LVT mask bit.
pub const APIC_LVT_MASKED: u32 = 1 << 16;

/// Wires LINT0 as ExtINT (the 8259's output, virtual wire mode) and LINT1 as NMI.
///
/// LINT0 is left masked: with the IOAPIC described in ACPI the kernel never
/// programs the (in-kernel) 8259, whose reset-state vectors must not reach the
/// CPU; a kernel that falls back to PIC mode unmasks ExtINT itself.
pub fn configure_lapic(lapic: &mut LapicState) {
    let lint0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(
        lapic,
        APIC_LVT0,
        (lint0 & !0x700) | (APIC_MODE_EXTINT << 8) | APIC_LVT_MASKED,
    );
    let lint1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, (lint1 & !0x700) | (APIC_MODE_NMI << 8));
}

/// CPUID leaf 1 ECX: hypervisor present.
pub const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;

/// CPUID leaf 1 ECX: VMX (Intel virtualization).
pub const CPUID1_ECX_VMX: u32 = 1 << 5;
/// CPUID leaf 0x8000_0001 ECX: SVM (AMD virtualization).
pub const CPUID_EXT1_ECX_SVM: u32 = 1 << 2;

/// Adapts the hypervisor's supported CPUID to vCPU `id` of `count`: APIC ids in
/// leaves 1, 0xb and 0x1f, the logical-processor count, the hypervisor bit.
/// VMX and SVM are hidden: a coLinux guest runs beside the host's work and
/// does not host VMs of its own (as Firecracker's default), and a distribution
/// guest would otherwise load kvm_amd/kvm_intel at boot for nothing. The KVM
/// paravirtual leaves (0x4000_0000..) pass through as the backend gave them.
pub fn vcpu_cpuid(supported: &[CpuIdEntry], id: u32, count: u32) -> Vec<CpuIdEntry> {
    let mut out = supported.to_vec();
    for e in &mut out {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | ((count.min(255)) << 16);
                e.ecx |= CPUID1_ECX_HYPERVISOR;
                e.ecx &= !CPUID1_ECX_VMX;
                // HTT: the count in EBX[23:16] is valid.
                e.edx |= 1 << 28;
            }
            0xb | 0x1f => {
                // Subleaf 0: SMT level with one thread per core; subleaf 1: core
                // level with `count` cores. EDX is the x2APIC id.
                e.edx = id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (1 << 8) | e.index;
                    }
                    1 => {
                        e.eax = 32 - count.max(1).next_power_of_two().leading_zeros() - 1;
                        e.ebx = count;
                        e.ecx = (2 << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x8000_0001 => e.ecx &= !CPUID_EXT1_ECX_SVM,
            _ => {}
        }
    }
    out
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
    fn virtualization_extensions_are_hidden() {
        let entry = |function: u32, ecx: u32| CpuIdEntry {
            function,
            ecx,
            ..Default::default()
        };
        let out = vcpu_cpuid(
            &[
                entry(1, CPUID1_ECX_VMX | 1),
                entry(0x8000_0001, CPUID_EXT1_ECX_SVM | 1),
            ],
            0,
            1,
        );
        assert_eq!(out[0].ecx & CPUID1_ECX_VMX, 0);
        assert_eq!(out[0].ecx & 1, 1, "other leaf 1 bits stay");
        assert_eq!(out[1].ecx, 1, "SVM cleared, the rest kept");
    }

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

    #[test]
    fn lapic_lints() {
        let mut l = LapicState { regs: [0; 1024] };
        set_lapic_reg(&mut l, APIC_LVT0, 0x0400 | 0x20);
        configure_lapic(&mut l);
        assert_eq!(read_lapic(&l, APIC_LVT0), APIC_LVT_MASKED | 0x0700 | 0x20);
        assert_eq!((read_lapic(&l, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }

    #[test]
    fn cpuid_topology() {
        let sup = vec![
            CpuIdEntry {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            CpuIdEntry {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
        ];
        let c = vcpu_cpuid(&sup, 3, 4);
        assert_eq!(c[0].ebx >> 24, 3);
        assert_eq!((c[0].ebx >> 16) & 0xff, 4);
        assert_ne!(c[0].ecx & CPUID1_ECX_HYPERVISOR, 0);
        assert_eq!((c[1].ebx, c[1].edx, c[1].eax), (4, 3, 2));
    }
}
