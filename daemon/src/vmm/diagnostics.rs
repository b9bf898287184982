//! What the daemon prints when the guest dies in a way it cannot handle: the
//! registers and the code around RIP, as a `Code:` line in the form of the
//! Linux kernel's oops (which its `scripts/decodecode` disassembles).

use std::fmt::Write;

use colinux_driver::hypervisor::{SpecialRegisters, StandardRegisters};
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

/// Bytes shown before RIP and after it in a `Code:` line, as the Linux
/// kernel's oops shows them on x86.
const CODE_BEFORE: u64 = 42;
const CODE_AFTER: u64 = 21;

/// The `Code:` line of an oops for the bytes around `rip`: up to
/// [`CODE_BEFORE`] bytes before it, the byte at `rip` in `<>`, up to
/// [`CODE_AFTER`] after, each as far as `byte_at` reads them; `None` when
/// the byte at `rip` itself does not read.
pub fn code_line(rip: u64, byte_at: impl Fn(u64) -> Option<u8>) -> Option<String> {
    let at = byte_at(rip)?;
    let before: Vec<u8> = (1..=CODE_BEFORE)
        .map_while(|back| byte_at(rip.checked_sub(back)?))
        .collect();
    let after = (1..=CODE_AFTER).map_while(|ahead| byte_at(rip.checked_add(ahead)?));
    let mut line = String::from("Code:");
    for b in before.iter().rev() {
        let _ = write!(line, " {b:02x}");
    }
    let _ = write!(line, " <{at:02x}>");
    for b in after {
        let _ = write!(line, " {b:02x}");
    }
    Some(line)
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
    let byte_at = |lin: u64| -> Option<u8> {
        let phys = translate(mem, sregs, lin)?;
        mem.read_obj(GuestAddress(phys)).ok()
    };
    match translate(mem, sregs, linear) {
        Some(phys) => match code_line(linear, byte_at) {
            Some(line) => {
                let _ = writeln!(
                    s,
                    "  code at rip (physical {phys:#x}, {bitness}-bit; the kernel's scripts/decodecode disassembles it):\n  {line}"
                );
            }
            None => {
                let _ = writeln!(s, "  rip is at physical {phys:#x}, outside guest RAM");
            }
        },
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
    fn code_lines_read_as_a_kernel_oops_does() {
        let ram = [0x55u8, 0x48, 0x89, 0xe5, 0x0f, 0x0b, 0xc3];
        let at = |a: u64| ram.get(usize::try_from(a).ok()?).copied();
        assert_eq!(
            code_line(4, at).as_deref(),
            Some("Code: 55 48 89 e5 <0f> 0b c3")
        );
        assert_eq!(code_line(7, at), None, "rip past the readable bytes");
        let long = |a: u64| Some(a as u8);
        let line = code_line(100, long).unwrap();
        let bytes: Vec<&str> = line.split(' ').skip(1).collect();
        assert_eq!(bytes.len(), 42 + 1 + 21);
        assert_eq!((bytes[0], bytes[42], bytes[63]), ("3a", "<64>", "79"));
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
        // A real fault in RAM: the code is shown, no reset remark.
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
        assert!(text.contains(" <0f> 0b 00"), "{text}");
        assert!(text.contains("32-bit"), "{text}");
    }
}
