//! The zero page (`struct boot_params`) of the Linux 64-bit boot protocol:
//! the setup header, the command line's address, the initrd, the e820 memory
//! map, the ACPI RSDP and the text screen, written at [`ZERO_PAGE_START`]
//! for the kernel to find in `%rsi`.
//!
//! The structure is linux-loader's `boot_params`, written by its
//! `LinuxBootConfigurator`.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::bzimage::{BOOT_FLAG, HDR_MAGIC, KASLR_FLAG, LOADED_HIGH, LOADER_UNDEFINED};
use super::error::LoadError;
use super::initrd::LoadedInitrd;
use crate::arch::x86_64::layout::{E820Entry, CMDLINE_START, ZERO_PAGE_START};

/// `loadflags` with [`KASLR_FLAG`] cleared when the command line says `nokaslr`.
pub fn honour_nokaslr(loadflags: u8, cmdline: &str) -> u8 {
    if cmdline.split_whitespace().any(|w| w == "nokaslr") {
        loadflags & !KASLR_FLAG
    } else {
        loadflags
    }
}

/// Inputs of the zero page.
#[derive(Debug, Clone)]
pub struct ZeroPageConfig<'a> {
    /// The kernel's setup header.
    pub header: setup_header,
    /// Command line length in bytes (without NUL); it lives at [`CMDLINE_START`]
    /// (the length is implied by the NUL; kept for diagnostics).
    pub cmdline_len: usize,
    /// The initrd, if any.
    pub initrd: Option<LoadedInitrd>,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// Physical address of the ACPI RSDP, if tables were built.
    pub rsdp: Option<u64>,
}

/// Builds `struct boot_params` for the 64-bit boot protocol.
pub fn build_zero_page(cfg: &ZeroPageConfig<'_>) -> boot_params {
    let mut p = boot_params {
        hdr: cfg.header,
        ..Default::default()
    };
    p.hdr.type_of_loader = LOADER_UNDEFINED;
    p.hdr.boot_flag = BOOT_FLAG;
    p.hdr.header = HDR_MAGIC;
    p.hdr.loadflags |= LOADED_HIGH;
    p.hdr.cmd_line_ptr = CMDLINE_START as u32;
    if let Some(i) = cfg.initrd {
        p.hdr.ramdisk_image = i.addr as u32;
        p.hdr.ramdisk_size = i.size as u32;
        p.ext_ramdisk_image = (i.addr >> 32) as u32;
        p.ext_ramdisk_size = (i.size >> 32) as u32;
    }
    if let Some(rsdp) = cfg.rsdp {
        p.acpi_rsdp_addr = rsdp;
    }
    let n = cfg.e820.len().min(p.e820_table.len());
    for (slot, e) in p.e820_table.iter_mut().zip(cfg.e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
        };
    }
    p.e820_entries = n as u8;
    p
}

/// A VGA colour text screen the firmware would have left behind (mode 3),
/// described in the zero page's `screen_info` so the kernel's `vgacon` takes
/// it: without it the kernel uses its dummy console and the virtual
/// terminals show nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgaTextMode {
    /// Columns.
    pub cols: u8,
    /// Rows.
    pub rows: u8,
    /// Character cell height in scan lines (16, or 8 for tall screens).
    pub font_height: u8,
}

/// Describes `mode` in `p.screen_info`: colour text mode 3 on a VGA
/// (`orig_video_isVGA` 1, an EGA-class BX), cursor at the top left.
pub fn set_text_screen(p: &mut boot_params, mode: VgaTextMode) {
    let si = &mut p.screen_info;
    si.orig_x = 0;
    si.orig_y = 0;
    si.orig_video_page = 0;
    si.orig_video_mode = 3;
    si.orig_video_cols = mode.cols;
    si.orig_video_lines = mode.rows;
    si.orig_video_isVGA = 1;
    // BL = 3: EGA-class adapter with 256 KiB (what INT 10h AH=12h reports).
    si.orig_video_ega_bx = 0x0003;
    si.orig_video_points = u16::from(mode.font_height);
}

/// Writes the zero page at [`ZERO_PAGE_START`].
pub fn write_zero_page(mem: &GuestMemoryMmap, p: &boot_params) -> Result<(), LoadError> {
    LinuxBootConfigurator::write_bootparams(&BootParams::new(p, GuestAddress(ZERO_PAGE_START)), mem)
        .map_err(|_| LoadError::GuestWrite {
            what: "zero page",
            addr: ZERO_PAGE_START,
        })
}

#[cfg(test)]
mod tests {
    use super::super::bzimage::synthesized_header;
    use super::*;
    use crate::arch::x86_64::layout::MemoryLayout;
    use vm_memory::{ByteValued, Bytes};

    #[test]
    fn nokaslr_clears_the_kaslr_flag_and_nothing_else() {
        let f = LOADED_HIGH | KASLR_FLAG;
        assert_eq!(honour_nokaslr(f, "console=ttyS0 nokaslr ro"), LOADED_HIGH);
        assert_eq!(honour_nokaslr(f, "console=ttyS0 ro"), f);
        assert_eq!(honour_nokaslr(f, "nokaslr=1"), f, "only the bare word");
    }

    #[test]
    fn zero_page_fields_and_write() {
        let l = MemoryLayout::new(512).unwrap();
        let e820 = l.e820();
        let p = build_zero_page(&ZeroPageConfig {
            header: synthesized_header(),
            cmdline_len: 10,
            initrd: Some(LoadedInitrd {
                addr: 0x1000_0000,
                size: 0x1234,
            }),
            e820: &e820,
            rsdp: Some(0xe0000),
        });
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.ramdisk_image }, 0x1000_0000);
        assert_eq!({ p.hdr.type_of_loader }, LOADER_UNDEFINED);
        assert_eq!(p.e820_entries as usize, e820.len());
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        let mem = l.allocate().unwrap();
        write_zero_page(&mem, &p).unwrap();
        let mut back = vec![0u8; std::mem::size_of::<boot_params>()];
        mem.read_slice(&mut back, GuestAddress(ZERO_PAGE_START))
            .unwrap();
        assert_eq!(back, p.as_slice());
    }
}
