//! The driver's page-table builder against the software page walker: for random
//! mapping descriptions, every mapped address translates as described, nothing
//! else translates, permissions hold, and every table lies in its reserved area.

use std::collections::BTreeMap;

use colinux_driver::arch::x86_64::paging::{build, Access, Mapping, PageSize, TableArea};
use colinux_sim::paging::{walk, WalkError};
use proptest::prelude::*;

fn page_size() -> impl Strategy<Value = PageSize> {
    prop_oneof![
        Just(PageSize::Size4K),
        Just(PageSize::Size2M),
        Just(PageSize::Size1G)
    ]
}

fn access() -> impl Strategy<Value = Access> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(writable, user, no_execute)| Access {
        writable,
        user,
        no_execute,
    })
}

/// Up to 6 non-overlapping mappings: each gets its own 512 GiB slot of the
/// lower or upper canonical half, so overlaps cannot happen by construction.
fn mappings() -> impl Strategy<Value = Vec<Mapping>> {
    prop::collection::vec(
        (
            page_size(),
            1u64..4,
            0u64..64,
            0u64..(1 << 20),
            access(),
            any::<bool>(),
        ),
        1..6,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (page, count, vslot, pslot, access, high))| {
                let p = page.bytes();
                let half = if high { 0xffff_8000_0000_0000u64 } else { 0 };
                Mapping {
                    virt: half + ((i as u64 * 2 + 1) << 39) + vslot * p,
                    phys: (pslot * p) % (1 << 46),
                    size: count * p,
                    page,
                    access,
                }
            })
            .collect()
    })
}

fn samples(m: &Mapping) -> Vec<u64> {
    let p = m.page.bytes();
    let mut v = vec![0, m.size - 1, m.size / 2, p - 1, p, m.size - p];
    v.retain(|&o| o < m.size);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn builder_agrees_with_walker(maps in mappings(), base_page in 1u64..256) {
        let area = TableArea { base: base_page * 4096, pages: 64 };
        let t = build(&maps, area).expect("valid description builds");
        let mem: BTreeMap<u64, Box<[u64; 512]>> = t.pages.clone();
        for addr in t.pages.keys() {
            prop_assert!(*addr >= area.base && *addr < area.base + area.pages * 4096, "table {:#x} outside area", addr);
        }
        prop_assert!(t.cr3 >= area.base && t.cr3 < area.base + area.pages * 4096);
        for m in &maps {
            for off in samples(m) {
                let tr = walk(&mem, t.cr3, m.virt + off).expect("mapped address translates");
                prop_assert_eq!(tr.phys, m.phys + off);
                prop_assert_eq!(tr.page_size, m.page.bytes());
                prop_assert_eq!(tr.writable, m.access.writable);
                prop_assert_eq!(tr.user, m.access.user);
                prop_assert_eq!(tr.executable, !m.access.no_execute);
                for table in &tr.tables[..tr.depth] {
                    prop_assert!(t.pages.contains_key(table), "walk visited {:#x}, not a built table", table);
                }
            }
            // Just outside each mapping: unmapped unless another mapping covers it.
            for probe in [m.virt.wrapping_sub(1), m.virt + m.size] {
                let covered = maps.iter().any(|o| probe >= o.virt && probe < o.virt + o.size);
                if !covered {
                    prop_assert!(walk(&mem, t.cr3, probe).is_err(), "{:#x} translates but is unmapped", probe);
                }
            }
        }
    }

    #[test]
    fn random_addresses_translate_only_if_described(maps in mappings(), probes in prop::collection::vec(any::<u64>(), 32)) {
        let t = build(&maps, TableArea { base: 0x10_0000, pages: 64 }).unwrap();
        for va in probes {
            let va = va & 0x0000_ffff_ffff_ffff;
            let va = if va >> 47 == 1 { va | 0xffff_0000_0000_0000 } else { va };
            let described = maps.iter().find(|m| va >= m.virt && va < m.virt + m.size);
            match (walk(&t.pages, t.cr3, va), described) {
                (Ok(tr), Some(m)) => prop_assert_eq!(tr.phys, m.phys + (va - m.virt)),
                (Ok(tr), None) => prop_assert!(false, "{:#x} -> {:#x} not described", va, tr.phys),
                (Err(e), Some(_)) => prop_assert!(false, "{:#x} described but {:?}", va, e),
                (Err(e), None) => {
                    let not_present = matches!(e, WalkError::NotPresent { .. });
                    prop_assert!(not_present, "{:?}", e)
                }
            }
        }
    }
}

#[test]
fn boot_identity_map_covers_low_4g() {
    let t = build(
        &colinux_driver::arch::x86_64::paging::boot_identity_map(),
        TableArea {
            base: 0x9000,
            pages: 16,
        },
    )
    .unwrap();
    for va in [0u64, 0x7000, 0x10_0200, 0xbfff_ffff, 0xffff_ffff] {
        let tr = walk(&t.pages, t.cr3, va).unwrap();
        assert_eq!(tr.phys, va);
        assert!(tr.writable && tr.executable);
    }
    assert_eq!(
        walk(&t.pages, t.cr3, 1 << 32).unwrap_err(),
        WalkError::NotPresent { level: 3 }
    );
}
