//! The architectural side of the world switch: the state a vCPU has after
//! reset, the identity the simulated CPU reports (CPUID, LAPIC), and the entry
//! checks — the state the monitor hands to the guest must be consistent
//! ([`crate::arch::check`]), or the "hardware" refuses the entry as VMX/SVM do.

use colinux_driver::hypervisor::{
    CpuIdEntry, LapicState, SegmentRegister, SpecialRegisters, StandardRegisters,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::{self, Violation};

/// Exit reason returned for a refused entry: VMX basic reason 33 ("VM-entry
/// failure due to invalid guest state") with the entry-failure bit 31 set.
pub const FAIL_ENTRY_INVALID_STATE: u64 = 0x8000_0021;

/// CR0.PE.
const CR0_PE: u64 = 1;

/// The general-purpose registers after reset (RDX holds the CPU signature).
pub fn reset_regs() -> StandardRegisters {
    StandardRegisters {
        rip: 0xfff0,
        rflags: 0x2,
        rdx: 0x600,
        ..Default::default()
    }
}

/// The special registers after reset, as KVM reports them: real mode, CS at
/// the reset vector, a busy TSS in TR, the APIC enabled at its default base (BSP
/// flag for vCPU 0).
pub fn reset_sregs(id: u32) -> SpecialRegisters {
    let data = SegmentRegister {
        limit: 0xffff,
        type_: 3,
        present: 1,
        s: 1,
        ..Default::default()
    };
    let mut s = SpecialRegisters {
        cs: SegmentRegister {
            base: 0xffff_0000,
            selector: 0xf000,
            type_: 0xb,
            ..data
        },
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: SegmentRegister {
            type_: 0xb,
            s: 0,
            ..data
        },
        ldt: SegmentRegister {
            type_: 2,
            s: 0,
            ..data
        },
        cr0: 0x6000_0010,
        apic_base: 0xfee0_0800 | if id == 0 { 0x100 } else { 0 },
        ..Default::default()
    };
    s.gdt.limit = 0xffff;
    s.idt.limit = 0xffff;
    s
}

/// The local APIC page after reset: APIC id `id`, version 0x14 with 6 LVT
/// entries, every LVT masked, spurious vector 0xff.
pub fn reset_lapic(id: u32) -> LapicState {
    let mut l = LapicState { regs: [0; 1024] };
    let mut put = |off: usize, v: u32| {
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            l.regs[off + i] = *b as _;
        }
    };
    put(0x20, id << 24);
    put(0x30, 0x0005_0014);
    put(0xf0, 0xff);
    for lvt in [0x320, 0x330, 0x340, 0x350, 0x360, 0x370] {
        put(lvt, 0x1_0000);
    }
    l
}

/// The CPUID leaves the simulated CPU supports: a 64-bit CPU with the
/// features a stock kernel expects, vendor "coLinuxSimCP".
pub fn supported_cpuid() -> Vec<CpuIdEntry> {
    let e = |function, index, flags, eax, ebx, ecx, edx| CpuIdEntry {
        function,
        index,
        flags,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    };
    let v = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let vendor = b"coLinuxSimCP";
    // FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH MMX FXSR SSE SSE2
    let edx1 = 0x0789_fbff;
    // SSE3 PCLMUL SSSE3 CX16 SSE4.1 SSE4.2 x2APIC POPCNT
    let ecx1 = 0x00b8_2203;
    vec![
        e(
            0,
            0,
            0,
            0xd,
            v(&vendor[0..4]),
            v(&vendor[8..12]),
            v(&vendor[4..8]),
        ),
        e(1, 0, 0, 0x0008_0f10, 0x0000_0800, ecx1, edx1),
        e(0xb, 0, 1, 0, 1, 0x100, 0),
        e(0xb, 1, 1, 0, 1, 0x201, 0),
        e(0x8000_0000, 0, 0, 0x8000_0008, 0, 0, 0),
        // LAHF, LM, NX, SYSCALL, RDTSCP
        e(
            0x8000_0001,
            0,
            0,
            0,
            0,
            1,
            (1 << 29) | (1 << 20) | (1 << 11) | (1 << 27),
        ),
        e(0x8000_0008, 0, 0, 0x3028, 0, 0, 0),
    ]
}

/// Physical memory for the page walker: quadwords of guest RAM.
fn phys(mem: Option<&GuestMemoryMmap>) -> impl Fn(u64) -> Option<u64> + '_ {
    move |addr| mem?.read_obj::<u64>(GuestAddress(addr)).ok()
}

/// The rules `regs`/`sregs` break for an entry. In real mode selectors are not
/// GDT indices, so the GDT agreement rules do not apply there.
pub fn entry_violations(
    regs: &StandardRegisters,
    sregs: &SpecialRegisters,
    mem: Option<&GuestMemoryMmap>,
) -> Vec<Violation> {
    let mut v = arch::check(regs, sregs, &phys(mem));
    if sregs.cr0 & CR0_PE == 0 {
        v.retain(|x| !x.rule.starts_with("gdt."));
    }
    v
}

/// Applies a `size`-byte load of `value` to `reg` as x86-64 does: 1- and 2-byte
/// loads keep the upper bits, 4-byte loads zero-extend, 8-byte loads replace.
pub fn merge_register(reg: u64, value: u64, size: u8) -> u64 {
    match size {
        1 => (reg & !0xff) | (value & 0xff),
        2 => (reg & !0xffff) | (value & 0xffff),
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

/// Length of the instruction the scripted guest "executes" for a port access
/// (`in al,dx` / `in ax,dx` / `in eax,dx` and the `out` forms).
pub fn pio_insn_len(size: u8) -> u64 {
    if size == 2 {
        2
    } else {
        1
    }
}

/// Length of the `mov` the scripted guest "executes" for an MMIO access
/// (`mov al,[rbx]`, `mov ax,[rbx]`, `mov eax,[rbx]`, `mov rax,[rbx]`).
pub fn mmio_insn_len(size: u8) -> u64 {
    match size {
        2 | 8 => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state_passes_the_entry_rules() {
        let v = entry_violations(&reset_regs(), &reset_sregs(0), None);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn register_merge_widths() {
        assert_eq!(
            merge_register(0x1122_3344_5566_7788, 0xab, 1),
            0x1122_3344_5566_77ab
        );
        assert_eq!(
            merge_register(0x1122_3344_5566_7788, 0xabcd, 2),
            0x1122_3344_5566_abcd
        );
        assert_eq!(
            merge_register(0x1122_3344_5566_7788, 0xdead_beef, 4),
            0xdead_beef
        );
        assert_eq!(merge_register(1, u64::MAX, 8), u64::MAX);
    }

    #[test]
    fn cpuid_has_long_mode_and_vendor() {
        let c = supported_cpuid();
        let ext = c.iter().find(|e| e.function == 0x8000_0001).unwrap();
        assert_ne!(ext.edx & (1 << 29), 0);
        let l0 = c.iter().find(|e| e.function == 0).unwrap();
        assert_eq!(&l0.ebx.to_le_bytes(), b"coLi");
    }
}
