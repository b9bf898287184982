//! Guest-physical memory layout: where RAM, boot structures and MMIO live.
//!
//! RAM starts at 0 and runs up to at most 3 GiB; the rest of the RAM goes above
//! 4 GiB. The gap `[3 GiB, 4 GiB)` is the PCI hole: the 32-bit MMIO window for PCI
//! BARs, then the IOAPIC, the local APICs and KVM's TSS pages. The low megabyte
//! holds the boot structures (GDT, zero page, page tables, command line, ACPI).

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// One MiB.
pub const MIB: u64 = 1 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// Boot GDT (four entries: null, code64, data, TSS).
pub const BOOT_GDT_START: u64 = 0x500;
/// Boot IDT (empty: the kernel installs its own before enabling interrupts).
pub const BOOT_IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`) handed to the kernel in `%rsi`.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// PVH `hvm_start_info` (and its memory map) for ELF kernels booted through PVH.
pub const PVH_INFO_START: u64 = 0x6000;
/// First page reserved for the boot page tables.
pub const PAGE_TABLES_START: u64 = 0x9000;
/// Number of 4 KiB pages reserved for the boot page tables.
pub const PAGE_TABLES_PAGES: u64 = 0x10;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Room for the command line (including its NUL).
pub const CMDLINE_MAX_SIZE: u64 = 0x10000;
/// Stack pointer given to the boot CPU (below the zero page; the kernel switches
/// to its own stack at once).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// End of conventional low memory; the EBDA starts here.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables and the MP table live in the BIOS area `[0xe0000, 0x100000)`.
pub const BIOS_AREA_START: u64 = 0xe0000;
/// End of the BIOS area (1 MiB).
pub const BIOS_AREA_END: u64 = 0x10_0000;
/// Where the protected-mode kernel is loaded.
pub const KERNEL_START: u64 = 0x10_0000;
/// Highest end of RAM below 4 GiB.
pub const LOW_RAM_MAX_END: u64 = 3 * GIB;
/// Start of the 32-bit MMIO window for PCI BARs.
pub const MMIO32_START: u64 = 3 * GIB;
/// Size of the 32-bit MMIO window (up to the IOAPIC).
pub const MMIO32_SIZE: u64 = IOAPIC_START - MMIO32_START;
/// The IOAPIC's register window.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs' register window.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// RAM above the hole starts here.
pub const HIGH_RAM_START: u64 = 4 * GIB;

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One entry of the BIOS memory map the kernel receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// Errors building the memory layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Too little RAM for the boot structures and a kernel.
    #[error("guest memory of {mib} MiB is too small; give at least {min} MiB")]
    TooSmall {
        /// Requested size in MiB.
        mib: u64,
        /// Minimum in MiB.
        min: u64,
    },
    /// The host could not map the guest RAM.
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Alloc {
        /// Requested size in MiB.
        mib: u64,
        /// Why.
        #[source]
        source: crate::ram::RamError,
    },
}

/// Smallest guest the daemon accepts, in MiB.
pub const MIN_MEM_MIB: u64 = 32;

/// The guest-physical placement of `mem_mib` MiB of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total RAM in bytes.
    pub ram_size: u64,
}

impl MemoryLayout {
    /// Lays out `mem_mib` MiB of RAM.
    pub fn new(mem_mib: u64) -> Result<Self, LayoutError> {
        if mem_mib < MIN_MEM_MIB {
            return Err(LayoutError::TooSmall {
                mib: mem_mib,
                min: MIN_MEM_MIB,
            });
        }
        Ok(Self {
            ram_size: mem_mib * MIB,
        })
    }

    /// End of RAM below 4 GiB.
    pub fn low_ram_end(&self) -> u64 {
        self.ram_size.min(LOW_RAM_MAX_END)
    }

    /// Size of RAM above 4 GiB (0 when everything fits below the hole).
    pub fn high_ram_size(&self) -> u64 {
        self.ram_size - self.low_ram_end()
    }

    /// The RAM ranges `(start, size)` to map.
    pub fn ram_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = vec![(0, self.low_ram_end())];
        if self.high_ram_size() > 0 {
            ranges.push((HIGH_RAM_START, self.high_ram_size()));
        }
        ranges
    }

    /// Allocates the guest RAM, huge-page aligned (see [`crate::ram`]).
    pub fn allocate(&self) -> Result<GuestMemoryMmap, LayoutError> {
        let ranges: Vec<(GuestAddress, usize)> = self
            .ram_ranges()
            .into_iter()
            .map(|(s, l)| (GuestAddress(s), l as usize))
            .collect();
        crate::ram::allocate(&ranges).map_err(|source| LayoutError::Alloc {
            mib: self.ram_size / MIB,
            source,
        })
    }

    /// The BIOS memory map: RAM, the reserved EBDA/BIOS area holding the ACPI
    /// and MP tables, and the RAM above 4 GiB.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut map = vec![
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM,
            },
            E820Entry {
                addr: EBDA_START,
                size: 0xa0000 - EBDA_START,
                kind: E820_RESERVED,
            },
            E820Entry {
                addr: BIOS_AREA_START,
                size: BIOS_AREA_END - BIOS_AREA_START,
                kind: E820_RESERVED,
            },
            E820Entry {
                addr: KERNEL_START,
                size: self.low_ram_end() - KERNEL_START,
                kind: E820_RAM,
            },
        ];
        if self.high_ram_size() > 0 {
            map.push(E820Entry {
                addr: HIGH_RAM_START,
                size: self.high_ram_size(),
                kind: E820_RAM,
            });
        }
        map
    }
}

/// The 64-bit PCI MMIO window: 64 GiB starting at the first 64 GiB boundary at or
/// above the end of RAM.
pub fn mmio64_window(layout: &MemoryLayout) -> (u64, u64) {
    let ram_top = HIGH_RAM_START + layout.high_ram_size();
    let base = ram_top.next_multiple_of(64 << 30);
    (base, 64 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn e820_covers_all_ram_and_avoids_the_hole(mib in MIN_MEM_MIB..16384u64) {
            let l = MemoryLayout::new(mib).unwrap();
            let map = l.e820();
            let ram: u64 = map.iter().filter(|e| e.kind == E820_RAM).map(|e| e.size).sum();
            // Only the legacy area [EBDA, 1 MiB) is withheld from the kernel.
            prop_assert_eq!(ram, l.ram_size - (KERNEL_START - EBDA_START));
            for w in map.windows(2) {
                prop_assert!(w[0].addr + w[0].size <= w[1].addr, "sorted, disjoint: {:?}", w);
            }
            for e in &map {
                let end = e.addr + e.size;
                prop_assert!(end <= LOW_RAM_MAX_END || e.addr >= HIGH_RAM_START, "{:?} in hole", e);
            }
            let mapped: u64 = l.ram_ranges().iter().map(|r| r.1).sum();
            prop_assert_eq!(mapped, l.ram_size);
        }
    }

    #[test]
    fn rejects_tiny_guests() {
        assert!(matches!(
            MemoryLayout::new(4),
            Err(LayoutError::TooSmall { mib: 4, .. })
        ));
    }
}
