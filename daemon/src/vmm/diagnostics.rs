//! What the daemon prints when the guest dies in a way it cannot handle: the
//! registers and a disassembly of the code at RIP.

use std::fmt::Write;

use colinux_driver::hypervisor::{SpecialRegisters, StandardRegisters};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Translates a linear address to guest-physical by the guest's own page tables
/// (paging off, or four-level long-mode paging); `None` when unmapped.
pub fn translate(mem: &GuestMemoryMmap, sregs: &SpecialRegisters, linear: u64) -> Option<u64> {
    const PG: u64 = 1 << 31;
    const LMA: u64 = 1 << 10;
    if sregs.cr0 & PG == 0 {
        return Some(linear);
    }
    if sregs.efer & LMA == 0 {
        return None;
    }
    let mut table = sregs.cr3 & 0x000f_ffff_ffff_f000;
    for level in (1..=4).rev() {
        let idx = (linear >> (12 + 9 * (level - 1))) & 0x1ff;
        let entry: u64 = mem.read_obj(GuestAddress(table + idx * 8)).ok()?;
        if entry & 1 == 0 {
            return None;
        }
        let addr = entry & 0x000f_ffff_ffff_f000;
        if level == 1 || (level <= 3 && entry & 0x80 != 0) {
            let page_mask = (1u64 << (12 + 9 * (level - 1))) - 1;
            return Some((addr & !page_mask) | (linear & page_mask));
        }
        table = addr;
    }
    None
}

/// Disassembles up to `count` instructions at `rip` from `code` (64-, 32- or
/// 16-bit per `bitness`).
pub fn disassemble(code: &[u8], rip: u64, bitness: u32, count: usize) -> String {
    let mut out = String::new();
    let mut decoder = Decoder::with_ip(bitness, code, rip, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut text = String::new();
    for insn in decoder.iter().take(count) {
        text.clear();
        fmt.format(&insn, &mut text);
        let start = (insn.ip() - rip) as usize;
        let bytes: String = code[start..start + insn.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(out, "  {:016x}  {:<24} {}", insn.ip(), bytes, text);
    }
    out
}

/// Whether the state is the architectural reset state (CS:IP = F000:FFF0 with
/// base 0xffff0000): AMD SVM reinitializes a vCPU on shutdown, so after a triple
/// fault the faulting state is gone.
pub fn is_reset_state(regs: &StandardRegisters, sregs: &SpecialRegisters) -> bool {
    regs.rip == 0xfff0 && sregs.cs.base == 0xffff_0000 && sregs.cr0 & 1 == 0
}

/// The full report: registers, control registers, segments and the code at RIP.
pub fn report(mem: &GuestMemoryMmap, regs: &StandardRegisters, sregs: &SpecialRegisters) -> String {
    let mut s = String::new();
    if is_reset_state(regs, sregs) {
        let _ = writeln!(
            s,
            "  (the hypervisor reset this vCPU when it shut down, as AMD SVM does: the values below are the reset state, not the faulting one)"
        );
    }
    let _ = writeln!(
        s,
        "  rip={:016x} rflags={:08x} rsp={:016x} rbp={:016x}",
        regs.rip, regs.rflags, regs.rsp, regs.rbp
    );
    let _ = writeln!(
        s,
        "  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}",
        regs.rax, regs.rbx, regs.rcx, regs.rdx
    );
    let _ = writeln!(
        s,
        "  rsi={:016x} rdi={:016x} r8 ={:016x} r9 ={:016x}",
        regs.rsi, regs.rdi, regs.r8, regs.r9
    );
    let _ = writeln!(
        s,
        "  r10={:016x} r11={:016x} r12={:016x} r13={:016x} r14={:016x} r15={:016x}",
        regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15
    );
    let _ = writeln!(
        s,
        "  cr0={:08x} cr2={:016x} cr3={:016x} cr4={:08x} efer={:x}",
        sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
    );
    let _ = writeln!(
        s,
        "  cs={:04x} (base {:x} l={} db={}) ss={:04x} gdt={:x}/{:x} idt={:x}/{:x}",
        sregs.cs.selector,
        sregs.cs.base,
        sregs.cs.l,
        sregs.cs.db,
        sregs.ss.selector,
        sregs.gdt.base,
        sregs.gdt.limit,
        sregs.idt.base,
        sregs.idt.limit
    );
    let bitness = if sregs.cs.l == 1 {
        64
    } else if sregs.cs.db == 1 {
        32
    } else {
        16
    };
    let linear = sregs.cs.base.wrapping_add(regs.rip);
    match translate(mem, sregs, linear) {
        Some(phys) => {
            let mut code = [0u8; 64];
            let mut n = 0;
            while n < code.len()
                && mem
                    .read_slice(&mut code[n..n + 1], GuestAddress(phys + n as u64))
                    .is_ok()
            {
                n += 1;
            }
            if n == 0 {
                let _ = writeln!(s, "  rip is at physical {phys:#x}, outside guest RAM");
            } else {
                let _ = writeln!(s, "  code at rip (physical {phys:#x}):");
                s.push_str(&disassemble(&code[..n], regs.rip, bitness, 8));
            }
        }
        None => {
            let _ = writeln!(
                s,
                "  rip {linear:#x} is not mapped by the guest's page tables"
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disassembles_known_bytes() {
        // out dx, al ; hlt ; jmp $-1
        let text = disassemble(&[0xee, 0xf4, 0xeb, 0xfd], 0x1000, 64, 8);
        assert!(text.contains("out dx,al"), "{text}");
        assert!(text.contains("hlt"), "{text}");
        assert!(text.contains("0000000000001001"), "{text}");
    }

    #[test]
    fn translates_identity_and_unmapped() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 22)]).unwrap();
        let mut sregs = SpecialRegisters::default();
        assert_eq!(translate(&mem, &sregs, 0x1234), Some(0x1234));
        sregs.cr0 = 1 << 31 | 1;
        sregs.efer = 1 << 10;
        sregs.cr3 = 0x1000;
        // Empty PML4: unmapped.
        assert_eq!(translate(&mem, &sregs, 0x1234), None);
        // PML4[0] -> 0x2000 (PDPT), PDPT[0] -> 0x3000 (PD), PD[0] = 2 MiB page at 0x200000.
        mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0x20_0083u64, GuestAddress(0x3000)).unwrap();
        assert_eq!(translate(&mem, &sregs, 0x1234), Some(0x20_1234));
    }

    #[test]
    fn report_flags_reset_state_and_code_outside_ram() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let regs = StandardRegisters {
            rip: 0xfff0,
            rflags: 2,
            ..Default::default()
        };
        let mut sregs = SpecialRegisters::default();
        sregs.cs.base = 0xffff_0000;
        sregs.cs.selector = 0xf000;
        let text = report(&mem, &regs, &sregs);
        assert!(text.contains("reset state"), "{text}");
        assert!(text.contains("outside guest RAM"), "{text}");
        // A real fault in RAM: the code is disassembled, no reset remark.
        mem.write_slice(&[0x0f, 0x0b], GuestAddress(0x1000))
            .unwrap();
        let regs = StandardRegisters {
            rip: 0x1000,
            rflags: 2,
            ..Default::default()
        };
        sregs.cs.base = 0;
        sregs.cr0 = 1;
        sregs.cs.db = 1;
        let text = report(&mem, &regs, &sregs);
        assert!(!text.contains("reset state"), "{text}");
        assert!(text.contains("ud2"), "{text}");
    }
}
