//! Host mappings for guest RAM, aligned for huge pages.
//!
//! KVM maps guest memory with 2 MiB pages only where a guest-physical address
//! and its host-virtual address agree modulo 2 MiB, and the host backs the
//! range with a transparent huge page. A plain `mmap` (what vm-memory does)
//! returns a 4 KiB-aligned address, so every guest page then costs its own
//! nested-paging fault — under nested virtualization an exit to the host
//! kernel per 4 KiB the guest touches. Here each RAM range is mapped at a
//! 2 MiB-aligned address and advised `MADV_HUGEPAGE`, as QEMU does.

use vm_memory::mmap::{GuestRegionMmap, MmapRegionBuilder};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Huge page size the mappings are aligned to.
pub const HUGE_PAGE: usize = 2 << 20;

/// Why an aligned mapping could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// `mmap` failed.
    #[error("mmap of {0} bytes: {1}")]
    Mmap(usize, std::io::Error),
    /// vm-memory refused the region.
    #[error("guest region: {0}")]
    Region(String),
}

/// Maps `len` bytes of anonymous memory at a [`HUGE_PAGE`]-aligned address.
///
/// The mapping is never unmapped: guest RAM lives as long as the process
/// (the daemon runs one machine), and vm-memory regions built on a raw pointer
/// do not own it.
fn map_aligned(len: usize) -> Result<*mut u8, RamError> {
    let padded = len + HUGE_PAGE;
    // SAFETY: an anonymous private mapping at an address the kernel picks;
    // no existing memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(RamError::Mmap(padded, std::io::Error::last_os_error()));
    }
    let start = base as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = padded - head - len;
    // SAFETY: [start, start + head) and [aligned + len, start + padded) are the
    // unused ends of the mapping just made, which nothing references.
    unsafe {
        if head > 0 {
            libc::munmap(base, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        // Advice only: failure (e.g. THP compiled out) leaves 4 KiB pages.
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        // Children (execN programs, helpers) never inherit guest RAM: a fork
        // would otherwise write-protect every guest page for copy-on-write
        // under the running vCPUs (QEMU advises the same).
        libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_DONTFORK);
    }
    Ok(aligned as *mut u8)
}

/// Guest memory for `ranges` (`(guest address, length)`), each range mapped
/// at a huge-page-aligned host address.
pub fn allocate(ranges: &[(GuestAddress, usize)]) -> Result<GuestMemoryMmap, RamError> {
    let mut regions = Vec::new();
    for &(gpa, len) in ranges {
        let ptr = map_aligned(len)?;
        // SAFETY: `ptr` is the start of a live `len`-byte read/write mapping
        // made above and never unmapped.
        let builder = unsafe {
            MmapRegionBuilder::new(len)
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE)
                .with_raw_mmap_pointer(ptr)
        };
        let region = builder
            .build()
            .map_err(|e| RamError::Region(e.to_string()))?;
        regions.push(
            GuestRegionMmap::new(region, gpa).ok_or_else(|| RamError::Region("overflow".into()))?,
        );
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| RamError::Region(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemory, GuestMemoryRegion, MemoryRegionAddress};

    #[test]
    fn ranges_are_huge_page_aligned_and_usable() {
        let mem = allocate(&[
            (GuestAddress(0), 6 << 20),
            (GuestAddress(4 << 30), HUGE_PAGE),
        ])
        .unwrap();
        assert_eq!(mem.num_regions(), 2);
        for r in mem.iter() {
            let host = r.get_host_address(MemoryRegionAddress(0)).unwrap() as usize;
            assert_eq!(host % HUGE_PAGE, 0);
        }
        mem.write_obj(0x1234_5678u32, GuestAddress((6 << 20) - 4))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress((6 << 20) - 4)).unwrap(),
            0x1234_5678
        );
        assert_eq!(mem.read_obj::<u64>(GuestAddress(4 << 30)).unwrap(), 0);
    }

    #[test]
    fn a_child_process_does_not_inherit_guest_ram() {
        let mem = allocate(&[(GuestAddress(0), HUGE_PAGE)]).unwrap();
        mem.write_obj(7u8, GuestAddress(0)).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap();
        // SAFETY: the child only reads one byte of the (not inherited)
        // mapping and leaves with _exit; nextest runs each test in its own
        // process.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: see above; without MADV_DONTFORK this reads 7.
            let v = unsafe { std::ptr::read_volatile(host) };
            // SAFETY: ends the forked child at once, running none of the
            // parent's exit handlers.
            unsafe { libc::_exit(i32::from(v)) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
            "the child read guest RAM (status {status:#x})"
        );
    }
}
