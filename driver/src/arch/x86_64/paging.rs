//! x86-64 four-level page tables as a pure function.
//!
//! [`build`] turns a description (which virtual ranges map to which physical
//! ranges, with which page size and permissions) into table pages placed inside a
//! reserved physical area. Nothing here touches guest memory: the caller writes
//! the returned pages, and tests check them against the software page walker in
//! `colinux_sim::paging`.

use std::collections::BTreeMap;

/// Entry bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Entry bit: writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Entry bit: user-accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Entry bit: large page (2 MiB in a PD, 1 GiB in a PDPT).
pub const PTE_PAGE_SIZE: u64 = 1 << 7;
/// Entry bit: execute disable.
pub const PTE_NX: u64 = 1 << 63;
/// Physical-address bits of an entry (bits 12..51).
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A page size the builder can map with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB (PT entry).
    Size4K,
    /// 2 MiB (PD entry with PS).
    Size2M,
    /// 1 GiB (PDPT entry with PS).
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// Table level the leaf lives in (1 = PT, 2 = PD, 3 = PDPT).
    fn level(self) -> usize {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    /// Writes allowed.
    pub writable: bool,
    /// Ring 3 allowed.
    pub user: bool,
    /// Instruction fetches forbidden (requires EFER.NXE in the guest).
    pub no_execute: bool,
}

/// One range to map: `[virt, virt + size)` → `[phys, phys + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address (canonical, aligned to `page`).
    pub virt: u64,
    /// First physical address (aligned to `page`).
    pub phys: u64,
    /// Length in bytes (a multiple of `page`, non-zero).
    pub size: u64,
    /// Page size used for the leaves.
    pub page: PageSize,
    /// Permissions of every page in the range.
    pub access: Access,
}

/// Where the tables may go: `pages` 4 KiB pages starting at `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableArea {
    /// Physical address of the first page (4 KiB aligned).
    pub base: u64,
    /// Number of pages available.
    pub pages: u64,
}

/// The built tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageTables {
    /// Value for CR3 (the PML4's physical address).
    pub cr3: u64,
    /// Table pages by physical address, each 512 entries.
    pub pages: BTreeMap<u64, Box<[u64; 512]>>,
}

impl PageTables {
    /// The pages as little-endian bytes, ready to write to guest memory.
    pub fn page_bytes(&self) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
        self.pages
            .iter()
            .map(|(&a, t)| (a, t.iter().flat_map(|e| e.to_le_bytes()).collect()))
    }
}

/// Why a description cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagingError {
    /// An address or size is not a multiple of the page size, or the size is 0.
    #[error("mapping {virt:#x}->{phys:#x} size {size:#x} is not aligned to its {page:?} pages")]
    Misaligned {
        /// Virtual start.
        virt: u64,
        /// Physical start.
        phys: u64,
        /// Length.
        size: u64,
        /// Page size.
        page: PageSize,
    },
    /// A virtual range is not canonical (or wraps).
    #[error("virtual range at {virt:#x} size {size:#x} is not canonical")]
    NonCanonical {
        /// Virtual start.
        virt: u64,
        /// Length.
        size: u64,
    },
    /// A physical address does not fit in 52 bits.
    #[error("physical range at {phys:#x} exceeds 52 bits")]
    PhysTooHigh {
        /// Physical start.
        phys: u64,
    },
    /// Two mappings cover the same virtual page (or a large page covers a table).
    #[error("virtual address {virt:#x} is mapped twice")]
    Overlap {
        /// The doubly mapped address.
        virt: u64,
    },
    /// The table area is too small or misaligned.
    #[error("page tables need more than the {pages} pages reserved at {base:#x}")]
    AreaExhausted {
        /// Area base.
        base: u64,
        /// Area size in pages.
        pages: u64,
    },
}

/// Whether `va` is canonical for 48-bit virtual addresses.
pub fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

fn index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

struct Builder {
    area: TableArea,
    pages: BTreeMap<u64, Box<[u64; 512]>>,
    next: u64,
}

impl Builder {
    fn alloc(&mut self) -> Result<u64, PagingError> {
        if self.next >= self.area.pages {
            return Err(PagingError::AreaExhausted {
                base: self.area.base,
                pages: self.area.pages,
            });
        }
        let addr = self.area.base + self.next * 4096;
        self.next += 1;
        self.pages.insert(addr, Box::new([0; 512]));
        Ok(addr)
    }

    fn table(&mut self, addr: u64) -> &mut [u64; 512] {
        // Every table address handed out by `alloc` is in the map.
        self.pages.get_mut(&addr).expect("allocated table")
    }

    fn map_page(
        &mut self,
        root: u64,
        va: u64,
        pa: u64,
        page: PageSize,
        access: Access,
    ) -> Result<(), PagingError> {
        let mut table = root;
        let leaf_level = page.level();
        for level in (leaf_level + 1..=4).rev() {
            let i = index(va, level);
            let entry = self.table(table)[i];
            if entry & PTE_PRESENT == 0 {
                let child = self.alloc()?;
                self.table(table)[i] = child | PTE_PRESENT | PTE_WRITABLE | PTE_USER;
                table = child;
            } else if entry & PTE_PAGE_SIZE != 0 {
                return Err(PagingError::Overlap { virt: va });
            } else {
                table = entry & PTE_ADDR_MASK;
            }
        }
        let i = index(va, leaf_level);
        if self.table(table)[i] & PTE_PRESENT != 0 {
            return Err(PagingError::Overlap { virt: va });
        }
        let mut leaf = pa | PTE_PRESENT;
        if page != PageSize::Size4K {
            leaf |= PTE_PAGE_SIZE;
        }
        if access.writable {
            leaf |= PTE_WRITABLE;
        }
        if access.user {
            leaf |= PTE_USER;
        }
        if access.no_execute {
            leaf |= PTE_NX;
        }
        self.table(table)[i] = leaf;
        Ok(())
    }
}

fn validate(m: &Mapping) -> Result<(), PagingError> {
    let p = m.page.bytes();
    if m.size == 0
        || !m.virt.is_multiple_of(p)
        || !m.phys.is_multiple_of(p)
        || !m.size.is_multiple_of(p)
    {
        return Err(PagingError::Misaligned {
            virt: m.virt,
            phys: m.phys,
            size: m.size,
            page: m.page,
        });
    }
    let last = m.virt.checked_add(m.size - 1);
    let canonical = match last {
        Some(last) => is_canonical(m.virt) && is_canonical(last) && (m.virt >> 47) == (last >> 47),
        None => false,
    };
    if !canonical {
        return Err(PagingError::NonCanonical {
            virt: m.virt,
            size: m.size,
        });
    }
    if m.phys.checked_add(m.size).is_none_or(|end| end > 1 << 52) {
        return Err(PagingError::PhysTooHigh { phys: m.phys });
    }
    Ok(())
}

/// Builds four-level tables for `mappings` inside `area`.
///
/// Intermediate entries are present, writable and user, so a leaf's permissions
/// are exactly the effective permissions of its pages.
pub fn build(mappings: &[Mapping], area: TableArea) -> Result<PageTables, PagingError> {
    if !area.base.is_multiple_of(4096) || area.base.checked_add(area.pages * 4096).is_none() {
        return Err(PagingError::AreaExhausted {
            base: area.base,
            pages: area.pages,
        });
    }
    for m in mappings {
        validate(m)?;
    }
    let mut b = Builder {
        area,
        pages: BTreeMap::new(),
        next: 0,
    };
    let root = b.alloc()?;
    for m in mappings {
        let step = m.page.bytes();
        let mut off = 0;
        while off < m.size {
            b.map_page(root, m.virt + off, m.phys + off, m.page, m.access)?;
            off += step;
        }
    }
    Ok(PageTables {
        cr3: root,
        pages: b.pages,
    })
}

/// The boot mapping the driver uses: identity map of `[0, 4 GiB)` with 2 MiB
/// pages, writable and executable, as the 64-bit boot protocol expects.
pub fn boot_identity_map() -> Vec<Mapping> {
    vec![Mapping {
        virt: 0,
        phys: 0,
        size: 4 << 30,
        page: PageSize::Size2M,
        access: Access {
            writable: true,
            user: false,
            no_execute: false,
        },
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_map_uses_six_pages() {
        let t = build(
            &boot_identity_map(),
            TableArea {
                base: 0x9000,
                pages: 16,
            },
        )
        .unwrap();
        assert_eq!(t.cr3, 0x9000);
        assert_eq!(t.pages.len(), 6);
        // PML4[0] -> PDPT, PDPT[3] -> a PD whose last entry maps 4 GiB - 2 MiB.
        let pdpt = t.pages[&0x9000][0] & PTE_ADDR_MASK;
        let pd3 = t.pages[&pdpt][3] & PTE_ADDR_MASK;
        assert_eq!(t.pages[&pd3][511] & PTE_ADDR_MASK, (4 << 30) - (2 << 20));
        assert_ne!(t.pages[&pd3][511] & PTE_PAGE_SIZE, 0);
    }

    #[test]
    fn rejects_bad_descriptions() {
        let m = |virt, size, page| Mapping {
            virt,
            phys: 0,
            size,
            page,
            access: Access::default(),
        };
        let area = TableArea {
            base: 0x1000,
            pages: 8,
        };
        assert!(matches!(
            build(&[m(0x1000, 0x1000, PageSize::Size2M)], area),
            Err(PagingError::Misaligned { .. })
        ));
        assert!(matches!(
            build(&[m(0x7fff_ffff_f000, 0x2000, PageSize::Size4K)], area),
            Err(PagingError::NonCanonical { .. })
        ));
        assert!(matches!(
            build(
                &[
                    m(0, 0x1000, PageSize::Size4K),
                    m(0, 0x1000, PageSize::Size4K)
                ],
                area
            ),
            Err(PagingError::Overlap { virt: 0 })
        ));
        assert!(matches!(
            build(
                &[
                    m(0, 2 << 20, PageSize::Size2M),
                    m(0x1000, 0x1000, PageSize::Size4K)
                ],
                area
            ),
            Err(PagingError::Overlap { .. })
        ));
        assert!(matches!(
            build(
                &[m(0, 4 << 30, PageSize::Size2M)],
                TableArea { base: 0, pages: 3 }
            ),
            Err(PagingError::AreaExhausted { .. })
        ));
    }
}
