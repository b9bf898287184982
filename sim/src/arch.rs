//! Architectural consistency rules for a vCPU's state, as the SDM/APM state them
//! for VM entry and for the mode the state claims to be in.
//!
//! [`check`] lists every rule a state breaks. The driver's boot state must pass
//! all of them for any valid configuration; broken states must be caught. Rules:
//!
//! - `cr0.pg-needs-pe`: CR0.PG requires CR0.PE.
//! - `cr0.nw-needs-cd`: CR0.NW requires CR0.CD.
//! - `efer.lma`: EFER.LMA equals CR0.PG ∧ EFER.LME.
//! - `long-mode-needs-pae`: long mode requires CR4.PAE.
//! - `cr4.pcide-needs-lma`: CR4.PCIDE only in long mode.
//! - `cs64.l-and-d`: a 64-bit code segment has L=1 and D=0; outside long mode L=0.
//! - `cs.code`: CS is usable, present, a code segment (S=1, type bit 3).
//! - `ss.data`, `ds.data` …: data-segment registers hold present writable data
//!   (or readable code for DS/ES/FS/GS) when usable.
//! - `cpl`: CS.DPL = SS.DPL = CS.RPL (ring 0 entry, non-conforming code).
//! - `gdt.limit`: the GDT limit covers whole 8-byte descriptors.
//! - `gdt.<seg>`: each segment cache agrees with the GDT descriptor its selector
//!   names (base, limit scaled by G, type, S, DPL, P, AVL, L, D/B, G).
//! - `tr.busy-tss`: TR holds a present busy TSS (type 11, S=0) from the GDT.
//! - `ldt`: LDTR is unusable or a present LDT (type 2).
//! - `cr3`: with paging, CR3 is page-aligned and below 2^52.
//! - `rflags`: bit 1 set; VM, and the reserved bits, clear.
//! - `rip.mapped`: with paging, RIP translates to executable memory; without,
//!   RIP lies within the CS limit.
//! - `rsp.mapped`: with paging and a non-zero RSP, the stack slot below RSP
//!   translates to writable memory.

use colinux_driver::hypervisor::{SegmentRegister, SpecialRegisters, StandardRegisters};

use crate::paging::{self, PhysMem};

const CR0_PE: u64 = 1;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Rule name (see the module docs).
    pub rule: String,
    /// What exactly is wrong.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.rule, self.detail)
    }
}

struct Checker<'a, M: PhysMem> {
    regs: &'a StandardRegisters,
    sregs: &'a SpecialRegisters,
    mem: &'a M,
    out: Vec<Violation>,
}

impl<M: PhysMem> Checker<'_, M> {
    fn fail(&mut self, rule: impl Into<String>, detail: impl Into<String>) {
        self.out.push(Violation {
            rule: rule.into(),
            detail: detail.into(),
        });
    }

    fn paging(&self) -> bool {
        self.sregs.cr0 & CR0_PG != 0
    }

    fn long_mode(&self) -> bool {
        self.sregs.efer & EFER_LMA != 0
    }

    /// Reads the 8 bytes at linear `la`, through the page tables when paging is on.
    fn read_linear(&self, la: u64) -> Option<u64> {
        let pa = if self.paging() {
            if !self.long_mode() {
                return None;
            }
            paging::walk(self.mem, self.sregs.cr3, la).ok()?.phys
        } else {
            la & 0xffff_ffff
        };
        if pa % 8 == 0 {
            self.mem.read_u64(pa)
        } else {
            let lo = self.mem.read_u64(pa & !7)?;
            let hi = self.mem.read_u64((pa & !7) + 8)?;
            let sh = (pa % 8) * 8;
            Some((lo >> sh) | (hi << (64 - sh)))
        }
    }

    fn control_registers(&mut self) {
        let s = self.sregs;
        if s.cr0 & CR0_PG != 0 && s.cr0 & CR0_PE == 0 {
            self.fail("cr0.pg-needs-pe", format!("cr0={:#x}", s.cr0));
        }
        if s.cr0 & CR0_NW != 0 && s.cr0 & CR0_CD == 0 {
            self.fail("cr0.nw-needs-cd", format!("cr0={:#x}", s.cr0));
        }
        let want_lma = s.cr0 & CR0_PG != 0 && s.efer & EFER_LME != 0;
        if (s.efer & EFER_LMA != 0) != want_lma {
            self.fail("efer.lma", format!("efer={:#x} cr0={:#x}", s.efer, s.cr0));
        }
        if (self.long_mode() || want_lma) && s.cr4 & CR4_PAE == 0 {
            self.fail("long-mode-needs-pae", format!("cr4={:#x}", s.cr4));
        }
        if s.cr4 & CR4_PCIDE != 0 && !self.long_mode() {
            self.fail("cr4.pcide-needs-lma", format!("cr4={:#x}", s.cr4));
        }
        if self.paging() && (s.cr3 & 0xfff != 0 && s.cr4 & CR4_PCIDE == 0 || s.cr3 >> 52 != 0) {
            self.fail("cr3", format!("cr3={:#x}", s.cr3));
        }
    }

    fn code_segment(&mut self) {
        let cs = self.sregs.cs;
        if cs.unusable != 0 || cs.present == 0 || cs.s == 0 || cs.type_ & 0x8 == 0 {
            self.fail("cs.code", format!("{cs:?}"));
        }
        if self.long_mode() && cs.l == 1 && cs.db != 0 {
            self.fail("cs64.l-and-d", format!("L={} D={}", cs.l, cs.db));
        }
        if !self.long_mode() && cs.l != 0 {
            self.fail("cs64.l-and-d", "CS.L=1 outside long mode".to_string());
        }
        let ss = self.sregs.ss;
        if cs.type_ & 0x4 == 0 && (cs.dpl != ss.dpl || u16::from(cs.dpl) != cs.selector & 3) {
            self.fail(
                "cpl",
                format!(
                    "CS.DPL={} SS.DPL={} CS.RPL={}",
                    cs.dpl,
                    ss.dpl,
                    cs.selector & 3
                ),
            );
        }
    }

    fn data_segments(&mut self) {
        let s = *self.sregs;
        for (name, seg, is_ss) in [
            ("ss", s.ss, true),
            ("ds", s.ds, false),
            ("es", s.es, false),
            ("fs", s.fs, false),
            ("gs", s.gs, false),
        ] {
            if seg.unusable != 0 {
                if is_ss && !self.long_mode() {
                    self.fail("ss.data", "SS unusable outside long mode");
                }
                continue;
            }
            let code = seg.type_ & 0x8 != 0;
            let ok = seg.present == 1
                && seg.s == 1
                && if is_ss {
                    !code && seg.type_ & 0x2 != 0
                } else {
                    !code || seg.type_ & 0x2 != 0
                };
            if !ok {
                self.fail(format!("{name}.data"), format!("{seg:?}"));
            }
        }
    }

    fn descriptor_tables(&mut self) {
        let s = *self.sregs;
        if (u32::from(s.gdt.limit) + 1) % 8 != 0 {
            self.fail("gdt.limit", format!("limit={:#x}", s.gdt.limit));
        }
        let tr = s.tr;
        if tr.unusable != 0
            || tr.present == 0
            || tr.s != 0
            || tr.type_ != 11
            || tr.selector & 4 != 0
        {
            self.fail("tr.busy-tss", format!("{tr:?}"));
        }
        let ldt = s.ldt;
        if ldt.unusable == 0 && (ldt.present == 0 || ldt.s != 0 || ldt.type_ != 2) {
            self.fail("ldt", format!("{ldt:?}"));
        }
        for (name, seg) in [
            ("cs", s.cs),
            ("ss", s.ss),
            ("ds", s.ds),
            ("es", s.es),
            ("fs", s.fs),
            ("gs", s.gs),
            ("tr", s.tr),
        ] {
            if seg.unusable != 0 || seg.selector & !7 == 0 {
                continue;
            }
            let rule = format!("gdt.{name}");
            if seg.selector & 4 != 0 {
                self.fail(rule, format!("selector {:#x} names the LDT", seg.selector));
                continue;
            }
            let off = u64::from(seg.selector & !7);
            if off + 7 > u64::from(s.gdt.limit) {
                self.fail(
                    rule,
                    format!(
                        "selector {:#x} beyond GDT limit {:#x}",
                        seg.selector, s.gdt.limit
                    ),
                );
                continue;
            }
            let Some(desc) = self.read_linear(s.gdt.base + off) else {
                self.fail(
                    rule,
                    format!("GDT entry at {:#x} unreadable", s.gdt.base + off),
                );
                continue;
            };
            let want = decode(desc, seg.selector);
            // The accessed bit may be set by the CPU; everything else must agree.
            let same = want.base == seg.base
                && want.limit == seg.limit
                && (want.type_ | 1) == (seg.type_ | 1)
                && want.s == seg.s
                && want.dpl == seg.dpl
                && want.present == seg.present
                && want.avl == seg.avl
                && want.l == seg.l
                && want.db == seg.db
                && want.g == seg.g;
            if !same {
                self.fail(rule, format!("cache {seg:?} but GDT says {want:?}"));
            }
        }
    }

    fn registers(&mut self) {
        let f = self.regs.rflags;
        const RESERVED: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !0x3f_ffff;
        if f & 2 == 0 || f & (1 << 17) != 0 || f & RESERVED != 0 {
            self.fail("rflags", format!("rflags={f:#x}"));
        }
        let rip = self.regs.rip;
        if self.paging() {
            let cs64 = self.long_mode() && self.sregs.cs.l == 1;
            let la = if cs64 {
                rip
            } else {
                self.sregs.cs.base.wrapping_add(rip)
            };
            match paging::walk(self.mem, self.sregs.cr3, la) {
                Ok(t) if t.executable => {}
                Ok(_) => self.fail("rip.mapped", format!("rip {rip:#x} is not executable")),
                Err(e) => self.fail("rip.mapped", format!("rip {rip:#x}: {e:?}")),
            }
            let rsp = self.regs.rsp;
            if rsp != 0 {
                match paging::walk(self.mem, self.sregs.cr3, rsp.wrapping_sub(8)) {
                    Ok(t) if t.writable => {}
                    Ok(_) => self.fail("rsp.mapped", format!("rsp {rsp:#x} is read-only")),
                    Err(e) => self.fail("rsp.mapped", format!("rsp {rsp:#x}: {e:?}")),
                }
            }
        } else if rip > u64::from(self.sregs.cs.limit) {
            self.fail(
                "rip.mapped",
                format!("rip {rip:#x} beyond CS limit {:#x}", self.sregs.cs.limit),
            );
        }
    }
}

/// Decodes a GDT descriptor into the segment cache it loads.
pub fn decode(desc: u64, selector: u16) -> SegmentRegister {
    let g = ((desc >> 55) & 1) as u8;
    let raw = ((desc & 0xffff) | ((desc >> 32) & 0xf_0000)) as u32;
    SegmentRegister {
        base: ((desc >> 16) & 0xff_ffff) | ((desc >> 32) & 0xff00_0000),
        limit: if g == 1 { (raw << 12) | 0xfff } else { raw },
        selector,
        type_: ((desc >> 40) & 0xf) as u8,
        present: ((desc >> 47) & 1) as u8,
        dpl: ((desc >> 45) & 3) as u8,
        db: ((desc >> 54) & 1) as u8,
        s: ((desc >> 44) & 1) as u8,
        l: ((desc >> 53) & 1) as u8,
        g,
        avl: ((desc >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Every rule `regs`/`sregs` break; `mem` is physical memory holding the GDT
/// and page tables.
pub fn check(
    regs: &StandardRegisters,
    sregs: &SpecialRegisters,
    mem: &impl PhysMem,
) -> Vec<Violation> {
    let mut c = Checker {
        regs,
        sregs,
        mem,
        out: Vec::new(),
    };
    c.control_registers();
    c.code_segment();
    c.data_segments();
    c.descriptor_tables();
    c.registers();
    c.out
}
