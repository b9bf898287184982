//! Loading the initrd: page-aligned at the top of low RAM, as high as the
//! kernel allows, straight from the file into guest memory.

use std::fs::File;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::error::{io_err, LoadError};
use crate::arch::x86_64::layout::MemoryLayout;

/// Where an initrd went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadedInitrd {
    /// Guest-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Loads the initrd at `path` page-aligned at the top of low RAM, below
/// `addr_max` (the header's `initrd_addr_max`) and above `kernel_end`.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    path: &Path,
    addr_max: u64,
    kernel_end: u64,
) -> Result<LoadedInitrd, LoadError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let limit = layout.low_ram_end().min(addr_max.saturating_add(1));
    let too_big = || LoadError::InitrdTooBig {
        path: path.to_owned(),
        size,
        limit,
    };
    let addr = limit.checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if addr < kernel_end {
        return Err(too_big());
    }
    // Straight from the file into guest RAM, without an intermediate copy.
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| match e {
            vm_memory::GuestMemoryError::IOError(source) => LoadError::Io {
                path: path.to_owned(),
                source,
            },
            _ => LoadError::GuestWrite {
                what: "initrd",
                addr,
            },
        })?;
    Ok(LoadedInitrd { addr, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_at_the_top_and_refuses_what_does_not_fit() {
        let l = MemoryLayout::new(64).unwrap();
        let mem = l.allocate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, vec![7u8; 5000]).unwrap();
        let i = load_initrd(&mem, &l, &small, 0x7fff_ffff, 0x200_0000).unwrap();
        assert_eq!(i.size, 5000);
        assert_eq!(i.addr % 4096, 0);
        assert!(i.addr + i.size <= l.low_ram_end());
        let mut back = [0u8; 2];
        mem.read_slice(&mut back, GuestAddress(i.addr)).unwrap();
        assert_eq!(back, [7, 7]);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![1u8; 70 << 20]).unwrap();
        assert!(matches!(
            load_initrd(&mem, &l, &big, 0x7fff_ffff, 0x200_0000),
            Err(LoadError::InitrdTooBig { .. })
        ));
    }
}
