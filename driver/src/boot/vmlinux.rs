//! The fast path for bzImages: decompress the kernel in the monitor and enter
//! the uncompressed vmlinux directly through the 64-bit boot protocol.
//!
//! A bzImage carries its kernel compressed; its own decompressor then runs as
//! guest code, which under nested or emulated virtualization is the slowest
//! part of a boot. When the payload is LZ4 (Debian's choice), the monitor
//! decompresses it natively, loads the ELF's segments at their physical
//! addresses and starts `startup_64` with the bzImage's own setup header — as
//! the decompressor would have, minus the kernel text's KASLR (the kernel's
//! memory regions are still randomized: see `loader::KASLR_FLAG`).

use linux_loader::loader::bootparam::setup_header;
use vm_memory::ByteValued;

use super::lz4;

/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// Largest decompressed kernel accepted.
const MAX_VMLINUX: usize = 512 << 20;

/// The setup header of a bzImage held in memory, if it has one.
pub fn setup_header_of(image: &[u8]) -> Option<setup_header> {
    let mut h = setup_header::default();
    let bytes = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + std::mem::size_of::<setup_header>())?;
    h.as_mut_slice().copy_from_slice(bytes);
    (h.header == super::loader::HDR_MAGIC).then_some(h)
}

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
}

/// Extracts the uncompressed ELF vmlinux from a bzImage with an LZ4 payload.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, ExtractError> {
    let h = setup_header_of(image).ok_or(ExtractError::NoPayload)?;
    let setup_sects = if h.setup_sects == 0 {
        4
    } else {
        usize::from(h.setup_sects)
    };
    let start = (setup_sects + 1) * 512 + h.payload_offset as usize;
    let payload = image
        .get(start..start + h.payload_length as usize)
        .ok_or(ExtractError::NoPayload)?;
    let magic: [u8; 4] = payload
        .get(..4)
        .ok_or(ExtractError::NoPayload)?
        .try_into()
        .unwrap_or_default();
    if u32::from_le_bytes(magic) != lz4::LEGACY_MAGIC {
        return Err(ExtractError::NotLz4(magic));
    }
    // The kernel build appends the uncompressed size to the payload.
    let tail = payload
        .len()
        .checked_sub(4)
        .ok_or(ExtractError::NoPayload)?;
    let total = u32::from_le_bytes(payload[tail..].try_into().unwrap_or_default()) as usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = if total > 0 && total <= MAX_VMLINUX {
        lz4::decompress_legacy_parallel(payload, total, threads)
            .or_else(|_| lz4::decompress_legacy(payload, MAX_VMLINUX))?
    } else {
        lz4::decompress_legacy(payload, MAX_VMLINUX)?
    };
    if out.get(..4) != Some(b"\x7fELF") {
        return Err(ExtractError::NotElf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4; // setup_sects
        img[0x202..0x206].copy_from_slice(&super::super::loader::HDR_MAGIC.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(payload);
        img
    }

    #[test]
    fn extracts_lz4_elf_and_refuses_others() {
        let mut stream = lz4::LEGACY_MAGIC.to_le_bytes().to_vec();
        let block = [0x50, 0x7f, b'E', b'L', b'F', 2];
        stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
        stream.extend_from_slice(&block);
        stream.extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(
            extract_vmlinux(&fake_bzimage(&stream)).unwrap(),
            b"\x7fELF\x02"
        );
        assert_eq!(
            extract_vmlinux(&fake_bzimage(b"\x1f\x8b\x08\x00rest")),
            Err(ExtractError::NotLz4([0x1f, 0x8b, 8, 0]))
        );
        let mut not_elf = lz4::LEGACY_MAGIC.to_le_bytes().to_vec();
        not_elf.extend_from_slice(&3u32.to_le_bytes());
        not_elf.extend_from_slice(&[0x20, b'M', b'Z']);
        assert_eq!(
            extract_vmlinux(&fake_bzimage(&not_elf)),
            Err(ExtractError::NotElf)
        );
        assert_eq!(extract_vmlinux(&[0u8; 100]), Err(ExtractError::NoPayload));
    }
}

/// How much of the first block is decoded to read the ELF and program headers.
const HEADERS_MAX: usize = 64 << 10;

/// Decompresses each `(block, output)` pair, the output being exactly the
/// block's size, on as many threads as the host has CPUs; threads take the
/// next block as they finish one, so uneven blocks balance out.
fn decompress_blocks(work: Vec<(&[u8], &mut [u8])>) -> Result<(), lz4::Lz4Error> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, work.len().max(1));
    let queue = std::sync::Mutex::new(work.into_iter());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    while let Some((src, out)) = next() {
                        if lz4::decompress_block_into(src, out)? != out.len() {
                            return Err(lz4::Lz4Error::Truncated(out.len()));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or(Err(lz4::Lz4Error::NotLegacy)))
    })
}

/// A PT_LOAD segment of the vmlinux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Entry point and PT_LOAD segments of an x86-64 ELF whose headers are in `head`.
fn elf_segments(head: &[u8]) -> Option<(u64, Vec<Segment>)> {
    if head.get(..4)? != b"\x7fELF" || head[4] != 2 || head[5] != 1 || u16_at(head, 18)? != 0x3e {
        return None;
    }
    let entry = u64_at(head, 24)?;
    let phoff = u64_at(head, 32)? as usize;
    let phentsize = usize::from(u16_at(head, 54)?);
    let phnum = usize::from(u16_at(head, 56)?);
    if phentsize < 56 {
        return None;
    }
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(head, p)? != 1 {
            continue;
        }
        let seg = Segment {
            offset: u64_at(head, p + 8)?,
            paddr: u64_at(head, p + 24)?,
            filesz: u64_at(head, p + 32)?,
            memsz: u64_at(head, p + 40)?,
        };
        if seg.filesz > 0 {
            segs.push(seg);
        }
    }
    segs.sort_by_key(|s| s.paddr);
    Some((entry, segs))
}

/// Where an in-place load put the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceKernel {
    /// ELF entry point (`startup_64`, physical).
    pub entry: u64,
    /// End of the highest segment (including its zero-filled part).
    pub end: u64,
}

/// Decompresses the vmlinux inside `image` straight into guest RAM and moves its
/// segments to their physical addresses: the file image is laid down so that its
/// first segment is already in place, and the others move down. No intermediate
/// copy of the (tens of MiB) kernel is made. Errors mean "use another path".
pub fn load_in_place(
    mem: &vm_memory::GuestMemoryMmap,
    image: &[u8],
) -> Result<InPlaceKernel, ExtractError> {
    use vm_memory::{GuestAddress, GuestMemory, GuestMemoryRegion};

    let h = setup_header_of(image).ok_or(ExtractError::NoPayload)?;
    let setup_sects = if h.setup_sects == 0 {
        4
    } else {
        usize::from(h.setup_sects)
    };
    let start = (setup_sects + 1) * 512 + h.payload_offset as usize;
    let payload = image
        .get(start..start + h.payload_length as usize)
        .ok_or(ExtractError::NoPayload)?;
    let magic: [u8; 4] = payload
        .get(..4)
        .ok_or(ExtractError::NoPayload)?
        .try_into()
        .unwrap_or_default();
    if u32::from_le_bytes(magic) != lz4::LEGACY_MAGIC {
        return Err(ExtractError::NotLz4(magic));
    }
    let tail = payload
        .len()
        .checked_sub(4)
        .ok_or(ExtractError::NoPayload)?;
    let total = u32::from_le_bytes(payload[tail..].try_into().unwrap_or_default()) as usize;
    let blocks = lz4::legacy_blocks(payload)?;
    if total == 0 || total > MAX_VMLINUX || total.div_ceil(lz4::LEGACY_BLOCK_MAX) != blocks.len() {
        return Err(ExtractError::NoPayload);
    }
    // The ELF and program headers are at the start of the first block.
    let mut first = vec![0u8; total.min(HEADERS_MAX)];
    lz4::decompress_block_prefix(blocks[0], &mut first)?;
    let (entry, segs) = elf_segments(&first).ok_or(ExtractError::NotElf)?;
    let lowest = *segs.first().ok_or(ExtractError::NotElf)?;
    let base = lowest
        .paddr
        .checked_sub(lowest.offset)
        .ok_or(ExtractError::NoPayload)?;
    let low_end = mem
        .iter()
        .next()
        .map(|r| r.start_addr().0 + r.len())
        .unwrap_or(0);
    let fits = |a: u64, len: u64| {
        a >= crate::layout::KERNEL_START && a.checked_add(len).is_some_and(|e| e <= low_end)
    };
    if !fits(base, total as u64) {
        return Err(ExtractError::NoPayload);
    }
    // Moves must not clobber a later segment's source bytes.
    for (i, a) in segs.iter().enumerate() {
        if !fits(a.paddr, a.memsz.max(a.filesz))
            || a.offset + a.filesz > total as u64
            || a.paddr > base + a.offset
        {
            return Err(ExtractError::NoPayload);
        }
        for b in &segs[i + 1..] {
            let (d0, d1) = (a.paddr, a.paddr + a.memsz.max(a.filesz));
            let (s0, s1) = (base + b.offset, base + b.offset + b.filesz);
            if d0 < s1 && s0 < d1 {
                return Err(ExtractError::NoPayload);
            }
        }
    }
    let region = mem
        .get_slice(GuestAddress(base), total)
        .map_err(|_| ExtractError::NoPayload)?;
    // SAFETY: `region` is `total` bytes of guest RAM inside one mmap'd region
    // (checked by get_slice); no vCPU runs yet and nothing else aliases it while
    // this function holds the slice.
    let dst: &mut [u8] =
        unsafe { std::slice::from_raw_parts_mut(region.ptr_guard_mut().as_ptr(), total) };
    drop(first);
    let work: Vec<(&[u8], &mut [u8])> = blocks
        .iter()
        .copied()
        .zip(dst.chunks_mut(lz4::LEGACY_BLOCK_MAX))
        .collect();
    decompress_blocks(work)?;
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
mod in_place_tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    /// An LZ4 block holding `data` as literals only.
    fn literal_block(data: &[u8]) -> Vec<u8> {
        let mut b = vec![0xf0];
        let mut rest = data.len() - 15;
        while rest >= 255 {
            b.push(255);
            rest -= 255;
        }
        b.push(rest as u8);
        b.extend_from_slice(data);
        b
    }

    /// An ELF with two PT_LOAD segments: A at file 0x1000 -> paddr 0x20_1000 and
    /// B at file 0x3000 -> paddr 0x20_2000 (moves down), B with a zeroed tail.
    fn elf() -> Vec<u8> {
        let mut f = vec![0u8; 0x4000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        f[24..32].copy_from_slice(&0x20_1000u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        for (i, (off, paddr, filesz, memsz)) in [
            (0x1000u64, 0x20_1000u64, 0x800u64, 0x800u64),
            (0x3000, 0x20_2000, 0x100, 0x200),
        ]
        .into_iter()
        .enumerate()
        {
            let p = 64 + 56 * i;
            f[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f[0x1000..0x1800].fill(0xaa);
        f[0x3000..0x3100].fill(0xbb);
        f[0x3100..0x3200].fill(0xcc); // not part of B's file bytes
        f
    }

    fn bzimage(payload_elf: &[u8]) -> Vec<u8> {
        let mut stream = lz4::LEGACY_MAGIC.to_le_bytes().to_vec();
        let blk = literal_block(payload_elf);
        stream.extend_from_slice(&(blk.len() as u32).to_le_bytes());
        stream.extend_from_slice(&blk);
        stream.extend_from_slice(&(payload_elf.len() as u32).to_le_bytes());
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x202..0x206].copy_from_slice(&super::super::loader::HDR_MAGIC.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(stream.len() as u32).to_le_bytes());
        img.extend_from_slice(&stream);
        img
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
            Err(ExtractError::NoPayload)
        );
        // Not an ELF inside.
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        assert_eq!(
            load_in_place(&mem, &bzimage(&[0x55; 64])),
            Err(ExtractError::NotElf)
        );
    }
}
