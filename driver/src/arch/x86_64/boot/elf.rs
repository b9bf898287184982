//! The little of ELF the in-place load needs: the entry point and the
//! `PT_LOAD` segments of an x86-64 executable, read from its first bytes.
//!
//! linux-loader's `Elf` loader reads a file; the in-place path has only the
//! first decompressed LZ4 block when it must decide where the kernel goes,
//! so it reads the headers itself.

/// A `PT_LOAD` segment with file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Physical load address.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero-filled).
    pub memsz: u64,
}

const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 0x3e;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const PHDR_SIZE: usize = 56;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Entry point and `PT_LOAD` segments (those with file bytes, sorted by
/// physical address) of an x86-64 ELF whose headers are in `head`.
pub fn segments(head: &[u8]) -> Option<(u64, Vec<Segment>)> {
    if head.get(..4)? != b"\x7fELF"
        || head[4] != ELFCLASS64
        || head[5] != ELFDATA2LSB
        || u16_at(head, 18)? != EM_X86_64
    {
        return None;
    }
    let entry = u64_at(head, 24)?;
    let phoff = u64_at(head, 32)? as usize;
    let phentsize = usize::from(u16_at(head, 54)?);
    let phnum = usize::from(u16_at(head, 56)?);
    if phentsize < PHDR_SIZE {
        return None;
    }
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(head, p)? != PT_LOAD {
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

/// Test-side ELF building.
#[cfg(test)]
pub(crate) mod build {
    use super::*;

    /// A `size`-byte x86-64 ELF entered at `entry` with `PT_LOAD` segments
    /// `(offset, paddr, filesz, memsz)`; the rest of the file is zero.
    pub fn elf(size: usize, entry: u64, segs: &[(u64, u64, u64, u64)]) -> Vec<u8> {
        let mut f = vec![0u8; size];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = ELFCLASS64;
        f[5] = ELFDATA2LSB;
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (off, paddr, filesz, memsz)) in segs.iter().enumerate() {
            let p = 64 + PHDR_SIZE * i;
            f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_load_segments_sorted() {
        let f = build::elf(
            0x1000,
            0x20_1000,
            &[
                (0x800, 0x30_0000, 0x10, 0x20),
                (0x400, 0x20_0000, 0x10, 0x10),
            ],
        );
        let (entry, segs) = segments(&f).unwrap();
        assert_eq!(entry, 0x20_1000);
        assert_eq!(
            segs.iter().map(|s| s.paddr).collect::<Vec<_>>(),
            [0x20_0000, 0x30_0000]
        );
        assert_eq!(segments(&f[..100]), None, "program headers cut off");
        let mut not64 = f.clone();
        not64[4] = 1;
        assert_eq!(segments(&not64), None);
    }
}
