//! The bzImage setup header (`struct setup_header`, Documentation/arch/x86/boot.rst):
//! its magic numbers and flag bits, reading it out of an image, and where the
//! compressed payload sits.
//!
//! Every other part of the boot code that needs a header field or the payload
//! asks here, so the layout of a bzImage is read in one place.

use linux_loader::loader::bootparam::setup_header;
use vm_memory::ByteValued;

use crate::arch::x86_64::layout::CMDLINE_MAX_SIZE;

/// `setup_header.header`: "HdrS".
pub const HDR_MAGIC: u32 = 0x5372_6448;
/// `setup_header.boot_flag`.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `xloadflags` bit: the kernel has the 64-bit entry at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `type_of_loader` for a loader without an assigned id.
pub const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags` bit: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags` bit: KASLR is on. The decompressor sets it when it randomizes;
/// the kernel then also randomizes its memory regions (direct map, vmalloc,
/// vmemmap). The monitor sets it when it enters vmlinux itself (see
/// [`super::vmlinux`]) so a guest keeps that randomization; `nokaslr` on the
/// command line clears it ([`super::zero_page::honour_nokaslr`]).
pub const KASLR_FLAG: u8 = 1 << 1;

/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `setup_sects` value 0 means 4, for old kernels.
const DEFAULT_SETUP_SECTS: usize = 4;

/// The setup header of a bzImage held in memory, if it has one.
pub fn setup_header_of(image: &[u8]) -> Option<setup_header> {
    let mut h = setup_header::default();
    let bytes = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + std::mem::size_of::<setup_header>())?;
    h.as_mut_slice().copy_from_slice(bytes);
    (h.header == HDR_MAGIC).then_some(h)
}

/// Whether `h` has the 64-bit entry point this monitor enters (boot protocol
/// 2.12+ with [`XLF_KERNEL_64`]).
pub fn has_64bit_entry(h: &setup_header) -> bool {
    let (version, xloadflags) = (h.version, h.xloadflags);
    version >= 0x020c && xloadflags & XLF_KERNEL_64 != 0
}

/// The compressed kernel inside a bzImage: the bytes `payload_offset` and
/// `payload_length` name, counted from the end of the real-mode setup code.
pub fn payload_of(image: &[u8]) -> Option<&[u8]> {
    let h = setup_header_of(image)?;
    let setup_sects = match usize::from(h.setup_sects) {
        0 => DEFAULT_SETUP_SECTS,
        n => n,
    };
    let start = (setup_sects + 1) * 512 + h.payload_offset as usize;
    image.get(start..start.checked_add(h.payload_length as usize)?)
}

/// A setup header for an ELF vmlinux entered through the 64-bit boot protocol.
pub fn synthesized_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG,
        header: HDR_MAGIC,
        version: 0x020f,
        kernel_alignment: 0x100_0000,
        initrd_addr_max: 0x7fff_ffff,
        cmdline_size: (CMDLINE_MAX_SIZE - 1) as u32,
        ..Default::default()
    }
}

/// A minimal bzImage around `payload` (header, four setup sectors), for tests.
#[cfg(test)]
pub(crate) fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
    let mut img = vec![0u8; (DEFAULT_SETUP_SECTS + 1) * 512];
    img[SETUP_HEADER_OFFSET] = DEFAULT_SETUP_SECTS as u8;
    img[0x202..0x206].copy_from_slice(&HDR_MAGIC.to_le_bytes());
    img[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    img.extend_from_slice(payload);
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_payload() {
        let img = fake_bzimage(b"payload!");
        assert_eq!(payload_of(&img), Some(&b"payload!"[..]));
        assert!(setup_header_of(&img).is_some());
        assert_eq!(setup_header_of(&[0u8; 1024]), None);
        assert_eq!(payload_of(&img[..img.len() - 1]), None, "payload cut short");
        let h = synthesized_header();
        assert!(has_64bit_entry(&setup_header {
            xloadflags: XLF_KERNEL_64,
            ..h
        }));
        assert!(!has_64bit_entry(&h));
    }
}
