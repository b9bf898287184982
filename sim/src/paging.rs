//! A software x86-64 page walker (four-level paging, 4 KiB / 2 MiB / 1 GiB pages).
//!
//! It is the reference the driver's page-table builder is tested against, and
//! the way the architectural checks find what RIP, RSP and the GDT point at. It
//! follows the SDM's rules: a walk stops at a non-present entry, `PS` in a PML4E
//! is reserved, large-page frames must be aligned, and effective permissions are
//! the AND of R/W and U/S over all levels and the OR of XD.

use std::collections::BTreeMap;

/// Entry bit: present.
pub const P: u64 = 1 << 0;
/// Entry bit: writable.
pub const RW: u64 = 1 << 1;
/// Entry bit: user.
pub const US: u64 = 1 << 2;
/// Entry bit: page size.
pub const PS: u64 = 1 << 7;
/// Entry bit: execute disable.
pub const XD: u64 = 1 << 63;
/// Physical-address field of an entry (MAXPHYADDR = 52).
pub const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Physical memory as the walker sees it: 8-byte little-endian loads.
pub trait PhysMem {
    /// The quadword at physical `addr` (8-byte aligned), or `None` outside memory.
    fn read_u64(&self, addr: u64) -> Option<u64>;
}

/// Sparse memory made of 4 KiB table pages (what the driver's builder produces).
impl PhysMem for BTreeMap<u64, Box<[u64; 512]>> {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let page = self.get(&(addr & !0xfff))?;
        Some(page[((addr & 0xfff) / 8) as usize])
    }
}

impl<F: Fn(u64) -> Option<u64>> PhysMem for F {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        self(addr)
    }
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub phys: u64,
    /// Size of the page that maps it (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// Writes allowed at every level.
    pub writable: bool,
    /// User access allowed at every level.
    pub user: bool,
    /// No level sets XD.
    pub executable: bool,
    /// Physical addresses of the tables visited, PML4 first (unused slots 0).
    pub tables: [u64; 4],
    /// Number of tables visited.
    pub depth: usize,
}

/// Why a linear address does not translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// Bits 63:47 are not a sign extension of bit 47.
    NonCanonical,
    /// The entry at `level` (4 = PML4 .. 1 = PT) is not present.
    NotPresent {
        /// Table level.
        level: u8,
    },
    /// A reserved bit is set in the entry at `level`.
    Reserved {
        /// Table level.
        level: u8,
    },
    /// A table lies outside physical memory.
    BadTable {
        /// The table's address.
        addr: u64,
    },
}

/// Whether `va` is canonical (48-bit linear addresses).
pub fn canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

/// Translates `va` through the tables rooted at `cr3`.
pub fn walk(mem: &impl PhysMem, cr3: u64, va: u64) -> Result<Translation, WalkError> {
    if !canonical(va) {
        return Err(WalkError::NonCanonical);
    }
    let mut t = Translation {
        phys: 0,
        page_size: 0,
        writable: true,
        user: true,
        executable: true,
        tables: [0; 4],
        depth: 0,
    };
    let mut table = cr3 & ADDR;
    for level in (1..=4u8).rev() {
        t.tables[t.depth] = table;
        t.depth += 1;
        let shift = 12 + 9 * (u32::from(level) - 1);
        let index = (va >> shift) & 0x1ff;
        let entry = mem
            .read_u64(table + index * 8)
            .ok_or(WalkError::BadTable { addr: table })?;
        if entry & P == 0 {
            return Err(WalkError::NotPresent { level });
        }
        t.writable &= entry & RW != 0;
        t.user &= entry & US != 0;
        t.executable &= entry & XD == 0;
        let large = entry & PS != 0;
        if large && level == 4 {
            return Err(WalkError::Reserved { level });
        }
        if level == 1 || large {
            let size = 1u64 << shift;
            let frame = entry & ADDR;
            if level > 1 {
                // Bit 12 is PAT in a large-page entry; the bits between it and
                // the page size must be zero.
                let must_be_zero = (size - 1) & ADDR & !(1 << 12);
                if frame & must_be_zero != 0 {
                    return Err(WalkError::Reserved { level });
                }
            }
            t.phys = (frame & !(size - 1)) | (va & (size - 1));
            t.page_size = size;
            return Ok(t);
        }
        table = entry & ADDR;
    }
    unreachable!("level 1 always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(entries: &[(u64, u64)]) -> BTreeMap<u64, Box<[u64; 512]>> {
        let mut m: BTreeMap<u64, Box<[u64; 512]>> = BTreeMap::new();
        for &(addr, v) in entries {
            m.entry(addr & !0xfff).or_insert_with(|| Box::new([0; 512]))
                [((addr & 0xfff) / 8) as usize] = v;
        }
        m
    }

    #[test]
    fn four_k_two_m_and_one_g_pages() {
        // PML4 at 0x1000; PML4[0] -> PDPT 0x2000; PDPT[0] -> PD 0x3000;
        // PD[0] -> PT 0x4000; PT[1] = 4K page at 0x7000 (read-only, XD);
        // PD[1] = 2M page at 0x4000_0000; PDPT[1] = 1G page at 0x8000_0000.
        let m = mem(&[
            (0x1000, 0x2000 | P | RW | US),
            (0x2000, 0x3000 | P | RW | US),
            (0x2008, 0x8000_0000 | P | RW | PS),
            (0x3000, 0x4000 | P | RW | US),
            (0x3008, 0x4000_0000 | P | RW | US | PS),
            (0x4008, 0x7000 | P | US | XD),
        ]);
        let t = walk(&m, 0x1000, 0x1234).unwrap();
        assert_eq!(
            (t.phys, t.page_size, t.writable, t.user, t.executable),
            (0x7234, 4096, false, true, false)
        );
        assert_eq!(&t.tables[..t.depth], &[0x1000, 0x2000, 0x3000, 0x4000]);
        let t = walk(&m, 0x1000, 0x20_0005).unwrap();
        assert_eq!(
            (t.phys, t.page_size, t.writable),
            (0x4000_0005, 2 << 20, true)
        );
        let t = walk(&m, 0x1000, 0x4000_0010).unwrap();
        assert_eq!((t.phys, t.page_size, t.user), (0x8000_0010, 1 << 30, false));
        assert_eq!(
            walk(&m, 0x1000, 0x0).unwrap_err(),
            WalkError::NotPresent { level: 1 }
        );
        assert_eq!(
            walk(&m, 0x1000, 0x80_0000_0000).unwrap_err(),
            WalkError::NotPresent { level: 4 }
        );
        assert_eq!(
            walk(&m, 0x1000, 0x8000_0000_0000).unwrap_err(),
            WalkError::NonCanonical
        );
    }

    #[test]
    fn reserved_bits_and_missing_tables() {
        let m = mem(&[(0x1000, 0x2000 | P | PS)]);
        assert_eq!(
            walk(&m, 0x1000, 0).unwrap_err(),
            WalkError::Reserved { level: 4 }
        );
        // A 2 MiB page whose frame is only 8 KiB aligned (bit 12 would be PAT).
        let m = mem(&[
            (0x1000, 0x2000 | P),
            (0x2000, 0x3000 | P),
            (0x3000, 0x20_2000 | P | PS),
        ]);
        assert_eq!(
            walk(&m, 0x1000, 0).unwrap_err(),
            WalkError::Reserved { level: 2 }
        );
        let m = mem(&[(0x1000, 0x9000 | P)]);
        assert_eq!(
            walk(&m, 0x1000, 0).unwrap_err(),
            WalkError::BadTable { addr: 0x9000 }
        );
    }
}
