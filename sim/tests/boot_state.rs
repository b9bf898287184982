//! The driver's boot CPU state against the architectural rules of
//! `colinux_sim::arch`: every valid configuration passes, broken states are caught.

use std::collections::BTreeMap;

use colinux_driver::arch::x86_64::cpu::{boot_cpu_state, BootCpuState, EntryMode};
use colinux_driver::arch::x86_64::layout::{PAGE_TABLES_PAGES, PAGE_TABLES_START};
use colinux_driver::arch::x86_64::paging::{boot_identity_map, build, TableArea};
use colinux_driver::hypervisor::SpecialRegisters;
use colinux_sim::arch::check;
use proptest::prelude::*;
use rstest::rstest;

type Mem = BTreeMap<u64, Box<[u64; 512]>>;

/// Guest memory holding the boot page tables and the state's GDT.
fn memory(state: &BootCpuState, with_tables: bool) -> Mem {
    let mut mem: Mem = BTreeMap::new();
    if with_tables {
        let t = build(
            &boot_identity_map(),
            TableArea {
                base: PAGE_TABLES_START,
                pages: PAGE_TABLES_PAGES,
            },
        )
        .unwrap();
        mem.extend(t.pages);
    }
    let base = state.sregs.gdt.base;
    for (i, d) in state.gdt.iter().enumerate() {
        let a = base + 8 * i as u64;
        mem.entry(a & !0xfff).or_insert_with(|| Box::new([0; 512]))[((a & 0xfff) / 8) as usize] =
            *d;
    }
    mem
}

fn reset_sregs() -> impl Strategy<Value = SpecialRegisters> {
    (any::<u64>(), any::<[u64; 4]>()).prop_map(|(apic, bitmap)| SpecialRegisters {
        apic_base: 0xfee0_0000 | (apic & 0x900),
        interrupt_bitmap: bitmap,
        ..Default::default()
    })
}

fn entry_mode() -> impl Strategy<Value = EntryMode> {
    prop_oneof![
        (0x1000u64..0x9f000).prop_map(|zp| EntryMode::Long64 {
            cr3: PAGE_TABLES_START,
            zero_page: zp & !0xfff
        }),
        (0x1000u64..0x9f000).prop_map(|si| EntryMode::Pvh32 {
            start_info: si & !0x7
        }),
    ]
}

proptest! {
    #[test]
    fn driver_boot_state_is_architecturally_consistent(
        mode in entry_mode(),
        entry in 0x10_0000u64..0xc000_0000,
        reset in reset_sregs(),
    ) {
        let s = boot_cpu_state(mode, entry, &reset);
        let mem = memory(&s, matches!(mode, EntryMode::Long64 { .. }));
        let v = check(&s.regs, &s.sregs, &mem);
        prop_assert!(v.is_empty(), "{:?}", v);
        prop_assert_eq!(s.sregs.apic_base, reset.apic_base);
    }
}

fn long_state() -> BootCpuState {
    boot_cpu_state(
        EntryMode::Long64 {
            cr3: PAGE_TABLES_START,
            zero_page: 0x7000,
        },
        0x10_0200,
        &SpecialRegisters::default(),
    )
}

#[rstest]
#[case::cs_d_bit(|s: &mut BootCpuState| s.sregs.cs.db = 1, "cs64.l-and-d")]
#[case::pg_without_pe(|s: &mut BootCpuState| s.sregs.cr0 &= !1, "cr0.pg-needs-pe")]
#[case::nw_without_cd(|s: &mut BootCpuState| s.sregs.cr0 |= 1 << 29, "cr0.nw-needs-cd")]
#[case::no_pae(|s: &mut BootCpuState| s.sregs.cr4 = 0, "long-mode-needs-pae")]
#[case::lma_missing(|s: &mut BootCpuState| s.sregs.efer = 1 << 8, "efer.lma")]
#[case::pcide_outside_long(|s: &mut BootCpuState| { s.sregs.cr4 |= 1 << 17; s.sregs.efer = 0; s.sregs.cr0 &= !(1 << 31) }, "cr4.pcide-needs-lma")]
#[case::tss_not_busy(|s: &mut BootCpuState| s.sregs.tr.type_ = 9, "tr.busy-tss")]
#[case::tss_unusable(|s: &mut BootCpuState| s.sregs.tr.unusable = 1, "tr.busy-tss")]
#[case::cs_cache_disagrees(|s: &mut BootCpuState| s.sregs.cs.base = 0x1000, "gdt.cs")]
#[case::ds_cache_disagrees(|s: &mut BootCpuState| s.sregs.ds.limit = 0xffff, "gdt.ds")]
#[case::gdt_entry_changed(|s: &mut BootCpuState| s.gdt[2] ^= 1 << 41, "gdt.ss")]
#[case::selector_past_limit(|s: &mut BootCpuState| s.sregs.gdt.limit = 0x17, "gdt.tr")]
#[case::ragged_gdt_limit(|s: &mut BootCpuState| s.sregs.gdt.limit = 30, "gdt.limit")]
#[case::cs_not_code(|s: &mut BootCpuState| s.sregs.cs.type_ = 3, "cs.code")]
#[case::ss_read_only(|s: &mut BootCpuState| s.sregs.ss.type_ = 1, "ss.data")]
#[case::ss_code(|s: &mut BootCpuState| s.sregs.ss.type_ = 0xb, "ss.data")]
#[case::cpl_mismatch(|s: &mut BootCpuState| s.sregs.ss.dpl = 3, "cpl")]
#[case::ldt_bad(|s: &mut BootCpuState| { s.sregs.ldt.unusable = 0; s.sregs.ldt.present = 1; s.sregs.ldt.type_ = 9 }, "ldt")]
#[case::cr3_unaligned(|s: &mut BootCpuState| s.sregs.cr3 |= 0x10, "cr3")]
#[case::rflags_bit1(|s: &mut BootCpuState| s.regs.rflags = 0, "rflags")]
#[case::rflags_vm(|s: &mut BootCpuState| s.regs.rflags |= 1 << 17, "rflags")]
#[case::rip_unmapped(|s: &mut BootCpuState| s.regs.rip = 5 << 30, "rip.mapped")]
#[case::rsp_unmapped(|s: &mut BootCpuState| s.regs.rsp = 6 << 30, "rsp.mapped")]
#[case::l_outside_long_mode(|s: &mut BootCpuState| { s.sregs.cr0 &= !(1 << 31); s.sregs.efer = 0 }, "cs64.l-and-d")]
fn broken_states_are_caught(#[case] breakit: fn(&mut BootCpuState), #[case] rule: &str) {
    let good = long_state();
    let mem = memory(&good, true);
    assert!(check(&good.regs, &good.sregs, &mem).is_empty());
    let mut bad = good;
    breakit(&mut bad);
    let mem = memory(&bad, true);
    let v = check(&bad.regs, &bad.sregs, &mem);
    assert!(
        v.iter().any(|x| x.rule == rule),
        "expected {rule}, got {v:?}"
    );
}

#[test]
fn pvh_state_passes_and_rip_beyond_limit_fails() {
    let mut s = boot_cpu_state(
        EntryMode::Pvh32 { start_info: 0x6000 },
        0x100_0000,
        &SpecialRegisters::default(),
    );
    let mem = memory(&s, false);
    assert!(check(&s.regs, &s.sregs, &mem).is_empty());
    assert_eq!((s.sregs.cs.l, s.sregs.cs.db), (0, 1));
    s.sregs.cs.limit = 0xffff;
    let v = check(&s.regs, &s.sregs, &mem);
    assert!(v.iter().any(|x| x.rule == "rip.mapped"), "{v:?}");
}
