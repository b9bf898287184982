//! The fast path for bzImages: decompress the kernel in the monitor and enter
//! the uncompressed vmlinux directly through the 64-bit boot protocol.
//!
//! A bzImage carries its kernel compressed; its own decompressor then runs as
//! guest code, which under nested or emulated virtualization is the slowest
//! part of a boot. When the payload is LZ4 (Debian's choice), the monitor
//! decompresses it natively, loads the ELF's segments at their physical
//! addresses and starts `startup_64` with the bzImage's own setup header — as
//! the decompressor would have, minus KASLR.

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
