//! The fast path for bzImages: decompress the kernel in the monitor and enter
//! the uncompressed vmlinux directly through the 64-bit boot protocol.
//!
//! A bzImage carries its kernel compressed; its own decompressor then runs as
//! guest code, which under nested or emulated virtualization is the slowest
//! part of a boot. When the payload is LZ4 (Debian's choice), the monitor
//! decompresses it natively ([`super::lz4`], on every core:
//! [`super::parallel`]), loads the ELF's segments ([`super::elf`]) at their
//! physical addresses and starts `startup_64` with the bzImage's own setup
//! header — as the decompressor would have, minus the kernel text's KASLR (the
//! kernel's memory regions are still randomized: see
//! [`super::bzimage::KASLR_FLAG`]).

use vm_memory::{GuestAddress, GuestMemory, GuestMemoryMmap, GuestMemoryRegion};

use super::bzimage;
use super::elf;
use super::lz4::{self, LEGACY_BLOCK_MAX};
use super::parallel;
use crate::arch::x86_64::layout::KERNEL_START;

/// Largest decompressed kernel accepted.
const MAX_VMLINUX: usize = 512 << 20;

/// Why the fast path does not apply (the caller then boots the bzImage as is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// No setup header or payload fields.
    #[error("no bzImage payload")]
    NoPayload,
    /// The payload is compressed with something other than LZ4.
    #[error("payload is not LZ4 (magic {0:02x?})")]
    NotLz4([u8; 4]),
    /// The LZ4 stream is damaged.
    #[error(transparent)]
    Lz4(#[from] lz4::Lz4Error),
    /// What came out is not an ELF file.
    #[error("decompressed payload is not an ELF vmlinux")]
    NotElf,
    /// The kernel's segments do not fit guest RAM, or overlap so that moving
    /// them in place would clobber one.
    #[error("the vmlinux cannot be laid out in place in guest RAM")]
    NoRoom,
}

/// The LZ4 payload of a bzImage and its uncompressed size (which the kernel
/// build appends to the payload; 0 if absent).
fn lz4_payload(image: &[u8]) -> Result<(&[u8], usize), ExtractError> {
    let payload = bzimage::payload_of(image).ok_or(ExtractError::NoPayload)?;
    let magic: [u8; 4] = payload
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .ok_or(ExtractError::NoPayload)?;
    if u32::from_le_bytes(magic) != lz4::LEGACY_MAGIC {
        return Err(ExtractError::NotLz4(magic));
    }
    let size = payload
        .get(payload.len().saturating_sub(4)..)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .ok_or(ExtractError::NoPayload)?;
    Ok((payload, u32::from_le_bytes(size) as usize))
}

/// Extracts the uncompressed ELF vmlinux from a bzImage with an LZ4 payload.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, ExtractError> {
    let (payload, total) = lz4_payload(image)?;
    let out = if total > 0 && total <= MAX_VMLINUX {
        parallel::decompress_legacy_parallel(payload, total, parallel::host_threads())
            .or_else(|_| lz4::decompress_legacy(payload, MAX_VMLINUX))?
    } else {
        lz4::decompress_legacy(payload, MAX_VMLINUX)?
    };
    if out.get(..4) != Some(b"\x7fELF") {
        return Err(ExtractError::NotElf);
    }
    Ok(out)
}

/// Where an in-place load put the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceKernel {
    /// ELF entry point (`startup_64`, physical).
    pub entry: u64,
    /// End of the highest segment (including its zero-filled part).
    pub end: u64,
}

/// Checks that the file image of `total` bytes fits at `base` in the first
/// RAM region (below `low_end`) and that each segment can move from there to
/// its physical address without clobbering a later segment's source bytes.
fn check_layout(
    segs: &[elf::Segment],
    base: u64,
    total: usize,
    low_end: u64,
) -> Result<(), ExtractError> {
    let fits =
        |a: u64, len: u64| a >= KERNEL_START && a.checked_add(len).is_some_and(|e| e <= low_end);
    if !fits(base, total as u64) {
        return Err(ExtractError::NoRoom);
    }
    for (i, a) in segs.iter().enumerate() {
        if !fits(a.paddr, a.memsz.max(a.filesz))
            || a.offset + a.filesz > total as u64
            || a.paddr > base + a.offset
        {
            return Err(ExtractError::NoRoom);
        }
        for b in &segs[i + 1..] {
            let (d0, d1) = (a.paddr, a.paddr + a.memsz.max(a.filesz));
            let (s0, s1) = (base + b.offset, base + b.offset + b.filesz);
            if d0 < s1 && s0 < d1 {
                return Err(ExtractError::NoRoom);
            }
        }
    }
    Ok(())
}

/// Decompresses the vmlinux inside `image` straight into guest RAM and moves its
/// segments to their physical addresses: the file image is laid down so that its
/// first segment is already in place, and the others move down. No intermediate
/// copy of the (tens of MiB) kernel is made. Errors mean "use another path".
pub fn load_in_place(mem: &GuestMemoryMmap, image: &[u8]) -> Result<InPlaceKernel, ExtractError> {
    let (payload, total) = lz4_payload(image)?;
    let blocks = lz4::legacy_blocks(payload)?;
    if total == 0 || total > MAX_VMLINUX || total.div_ceil(LEGACY_BLOCK_MAX) != blocks.len() {
        return Err(ExtractError::NoPayload);
    }
    // The ELF and program headers are at the start of the first block, which
    // is decoded whole here (the others on every core once the base is known).
    let mut first = vec![0u8; total.min(LEGACY_BLOCK_MAX)];
    lz4::decompress_block_into(blocks[0], &mut first)?;
    let (entry, segs) = elf::segments(&first).ok_or(ExtractError::NotElf)?;
    let lowest = *segs.first().ok_or(ExtractError::NotElf)?;
    let base = lowest
        .paddr
        .checked_sub(lowest.offset)
        .ok_or(ExtractError::NoRoom)?;
    let low_end = mem
        .iter()
        .next()
        .map(|r| r.start_addr().0 + r.len())
        .unwrap_or(0);
    check_layout(&segs, base, total, low_end)?;
    let region = mem
        .get_slice(GuestAddress(base), total)
        .map_err(|_| ExtractError::NoRoom)?;
    // SAFETY: `region` is `total` bytes of guest RAM inside one mmap'd region
    // (checked by get_slice); no vCPU runs yet and nothing else aliases it while
    // this function holds the slice.
    let dst: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(region.ptr_guard_mut().as_ptr(), total) };
    let (head, rest) = dst.split_at_mut(first.len());
    head.copy_from_slice(&first);
    drop(first);
    let work = blocks[1..]
        .iter()
        .copied()
        .zip(rest.chunks_mut(LEGACY_BLOCK_MAX))
        .collect();
    parallel::decompress_blocks(work, parallel::host_threads())?;
    let mut end = 0;
    for sgm in &segs {
        let from = sgm.offset as usize;
        let to = (sgm.paddr - base) as usize;
        let len = sgm.filesz as usize;
        if to != from {
            dst.copy_within(from..from + len, to);
        }
        let zero_end = (to + sgm.memsz as usize).min(total);
        if zero_end > to + len {
            dst[to + len..zero_end].fill(0);
        }
        end = end.max(sgm.paddr + sgm.memsz);
    }
    Ok(InPlaceKernel { entry, end })
}

#[cfg(test)]
mod tests {
    use super::super::bzimage::fake_bzimage;
    use super::super::elf::build;
    use super::super::lz4::encode;
    use super::*;
    use vm_memory::Bytes;

    /// A bzImage whose LZ4 payload is `payload_elf` in one literal block.
    fn bzimage(payload_elf: &[u8]) -> Vec<u8> {
        let blk = encode::literal_block(payload_elf);
        fake_bzimage(&encode::legacy(&[&blk], payload_elf.len()))
    }

    /// An ELF with two PT_LOAD segments: A at file 0x1000 -> paddr 0x20_1000 and
    /// B at file 0x3000 -> paddr 0x20_2000 (moves down), B with a zeroed tail.
    fn elf() -> Vec<u8> {
        let mut f = build::elf(
            0x4000,
            0x20_1000,
            &[
                (0x1000, 0x20_1000, 0x800, 0x800),
                (0x3000, 0x20_2000, 0x100, 0x200),
            ],
        );
        f[0x1000..0x1800].fill(0xaa);
        f[0x3000..0x3100].fill(0xbb);
        f[0x3100..0x3200].fill(0xcc); // not part of B's file bytes
        f
    }

    #[test]
    fn extracts_lz4_elf_and_refuses_others() {
        let block = [0x50, 0x7f, b'E', b'L', b'F', 2];
        let stream = encode::legacy(&[&block], 5);
        assert_eq!(
            extract_vmlinux(&fake_bzimage(&stream)).unwrap(),
            b"\x7fELF\x02"
        );
        assert_eq!(
            extract_vmlinux(&fake_bzimage(b"\x1f\x8b\x08\x00rest")),
            Err(ExtractError::NotLz4([0x1f, 0x8b, 8, 0]))
        );
        let not_elf = encode::legacy(&[&[0x20, b'M', b'Z']], 2);
        assert_eq!(
            extract_vmlinux(&fake_bzimage(&not_elf)),
            Err(ExtractError::NotElf)
        );
        assert_eq!(extract_vmlinux(&[0u8; 100]), Err(ExtractError::NoPayload));
    }

    #[test]
    fn segments_land_at_their_physical_addresses() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        mem.write_slice(&[0xee; 0x200], GuestAddress(0x20_2100))
            .unwrap();
        let k = load_in_place(&mem, &bzimage(&elf())).unwrap();
        assert_eq!(
            k,
            InPlaceKernel {
                entry: 0x20_1000,
                end: 0x20_2200
            }
        );
        let mut a = [0u8; 0x800];
        mem.read_slice(&mut a, GuestAddress(0x20_1000)).unwrap();
        assert!(a.iter().all(|&b| b == 0xaa));
        let mut b = [0u8; 0x200];
        mem.read_slice(&mut b, GuestAddress(0x20_2000)).unwrap();
        assert!(
            b[..0x100].iter().all(|&x| x == 0xbb),
            "file bytes moved down"
        );
        assert!(b[0x100..].iter().all(|&x| x == 0), "memsz tail zeroed");
    }

    #[test]
    fn refuses_what_does_not_fit() {
        // RAM too small for the file image at its base.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_2000)]).unwrap();
        assert_eq!(
            load_in_place(&mem, &bzimage(&elf())),
            Err(ExtractError::NoRoom)
        );
        // Not an ELF inside.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        assert_eq!(
            load_in_place(&mem, &bzimage(&[0x55; 64])),
            Err(ExtractError::NotElf)
        );
    }
}
