//! Loading the kernel, the initrd and the command line, and filling the zero page
//! (`struct boot_params`) or, for PVH ELF kernels, `struct hvm_start_info`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

use crate::layout::{
    E820Entry, MemoryLayout, CMDLINE_MAX_SIZE, CMDLINE_START, KERNEL_START, PVH_INFO_START,
    ZERO_PAGE_START,
};

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
/// command line clears it.
pub const KASLR_FLAG: u8 = 1 << 1;

/// `loadflags` with [`KASLR_FLAG`] cleared when the command line says `nokaslr`.
pub fn honour_nokaslr(loadflags: u8, cmdline: &str) -> u8 {
    if cmdline.split_whitespace().any(|w| w == "nokaslr") {
        loadflags & !KASLR_FLAG
    } else {
        loadflags
    }
}
/// PVH `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// Errors loading boot images.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is neither a bzImage nor an ELF vmlinux, or the loader refused it.
    #[error("{path}: not a kernel this monitor can boot: {why}")]
    BadKernel {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The initrd does not fit in guest RAM.
    #[error("{path}: initrd of {size} bytes does not fit below {limit:#x} in guest RAM")]
    InitrdTooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Highest usable end address.
        limit: u64,
    },
    /// The command line is longer than the kernel accepts.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Writing to guest memory failed (address outside RAM).
    #[error("writing {what} to guest memory at {addr:#x} failed")]
    GuestWrite {
        /// What was written.
        what: &'static str,
        /// Where.
        addr: u64,
    },
}

/// How the loaded kernel must be entered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelEntry {
    /// 64-bit boot protocol at `entry` with a zero page built from `header`.
    Linux64 {
        /// 64-bit entry point.
        entry: u64,
        /// The image's setup header (from a bzImage), or a synthesized one.
        header: setup_header,
    },
    /// PVH 32-bit entry at `entry`.
    Pvh {
        /// The PVH entry point from the ELF note.
        entry: u64,
    },
}

/// A kernel placed in guest memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadedKernel {
    /// How to enter it.
    pub entry: KernelEntry,
    /// First byte after the loaded image.
    pub end: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads a bzImage or an ELF vmlinux from `path` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoadError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let bad = |why: String| LoadError::BadKernel {
        path: path.to_owned(),
        why,
    };
    if magic == *b"\x7fELF" {
        let r = Elf::load(mem, None, &mut file, Some(GuestAddress(KERNEL_START)))
            .map_err(|e| bad(e.to_string()))?;
        let entry = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(a) => KernelEntry::Pvh { entry: a.0 },
            _ => KernelEntry::Linux64 {
                entry: r.kernel_load.0,
                header: synthesized_header(),
            },
        };
        return Ok(LoadedKernel {
            entry,
            end: r.kernel_end,
        });
    }
    if let Some(k) = load_bzimage_fast(mem, &mut file, path)? {
        return Ok(k);
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let r = BzImage::load(
        mem,
        Some(GuestAddress(KERNEL_START)),
        &mut file,
        Some(GuestAddress(KERNEL_START)),
    )
    .map_err(|e| bad(e.to_string()))?;
    let header = r
        .setup_header
        .ok_or_else(|| bad("bzImage without setup header".into()))?;
    let version = header.version;
    let xloadflags = header.xloadflags;
    if version < 0x020c || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(bad(format!(
            "boot protocol {}.{:02} without a 64-bit entry point (need 2.12+ with XLF_KERNEL_64)",
            version >> 8,
            version & 0xff
        )));
    }
    Ok(LoadedKernel {
        entry: KernelEntry::Linux64 {
            entry: r.kernel_load.0 + 0x200,
            header,
        },
        end: r.kernel_end,
    })
}

/// Boots a bzImage whose payload the monitor can decompress (LZ4) as its
/// uncompressed vmlinux, skipping the in-guest decompressor; `None` when the
/// image does not qualify (then it boots as a plain bzImage). Setting
/// `COLINUX_DECOMPRESS_IN_GUEST` turns this off (for comparisons and debugging).
fn load_bzimage_fast(
    mem: &GuestMemoryMmap,
    file: &mut File,
    path: &Path,
) -> Result<Option<LoadedKernel>, LoadError> {
    if std::env::var_os("COLINUX_DECOMPRESS_IN_GUEST").is_some() {
        return Ok(None);
    }
    let t0 = std::time::Instant::now();
    let mut image = Vec::new();
    file.read_to_end(&mut image).map_err(io_err(path))?;
    let read_ms = t0.elapsed().as_millis() as u64;
    let Some(header) = super::vmlinux::setup_header_of(&image) else {
        return Ok(None);
    };
    let (version, xloadflags) = (header.version, header.xloadflags);
    if version < 0x020c || xloadflags & XLF_KERNEL_64 == 0 {
        return Ok(None);
    }
    // The kernel text stays at its link address, but the kernel still
    // randomizes its memory regions, as after the decompressor's KASLR.
    let mut header = header;
    header.loadflags |= KASLR_FLAG;
    match super::vmlinux::load_in_place(mem, &image) {
        Ok(k) => {
            tracing::info!(
                read_ms,
                decompress_ms = t0.elapsed().as_millis() as u64 - read_ms,
                entry = format_args!("{:#x}", k.entry),
                "{}: decompressed in place by the monitor; entering vmlinux directly",
                path.display()
            );
            return Ok(Some(LoadedKernel {
                entry: KernelEntry::Linux64 {
                    entry: k.entry,
                    header,
                },
                end: k.end,
            }));
        }
        Err(e) => tracing::debug!("{}: no in-place load ({e})", path.display()),
    }
    let elf = match super::vmlinux::extract_vmlinux(&image) {
        Ok(elf) => elf,
        Err(e) => {
            tracing::debug!("{}: booting the bzImage as is ({e})", path.display());
            return Ok(None);
        }
    };
    drop(image);
    let mut cursor = std::io::Cursor::new(elf);
    match Elf::load(mem, None, &mut cursor, Some(GuestAddress(KERNEL_START))) {
        Ok(r) => {
            tracing::debug!(
                entry = format_args!("{:#x}", r.kernel_load.0),
                "{}: decompressed in the monitor; entering vmlinux directly",
                path.display()
            );
            Ok(Some(LoadedKernel {
                entry: KernelEntry::Linux64 {
                    entry: r.kernel_load.0,
                    header,
                },
                end: r.kernel_end,
            }))
        }
        Err(e) => {
            tracing::debug!(
                "{}: vmlinux inside does not load ({e}); booting the bzImage",
                path.display()
            );
            Ok(None)
        }
    }
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

/// Writes the NUL-terminated command line at [`CMDLINE_START`]; `max` is the
/// kernel's limit (`cmdline_size`, excluding the NUL).
pub fn load_cmdline(mem: &GuestMemoryMmap, cmdline: &str, max: usize) -> Result<(), LoadError> {
    let max = max.min(CMDLINE_MAX_SIZE as usize - 1);
    if cmdline.len() > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|_| LoadError::GuestWrite {
            what: "command line",
            addr: CMDLINE_START,
        })
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
    mem.write_slice(p.as_slice(), GuestAddress(ZERO_PAGE_START))
        .map_err(|_| LoadError::GuestWrite {
            what: "zero page",
            addr: ZERO_PAGE_START,
        })
}

/// Writes `hvm_start_info` at [`PVH_INFO_START`], followed by the memory map and
/// the initrd module entry; returns its address for `%rbx`.
pub fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    e820: &[E820Entry],
    initrd: Option<LoadedInitrd>,
    rsdp: Option<u64>,
) -> Result<u64, LoadError> {
    const START_INFO_SIZE: u64 = 56;
    let memmap = PVH_INFO_START + START_INFO_SIZE.next_multiple_of(16);
    let modlist = memmap + 24 * e820.len() as u64;
    let mut b = Vec::new();
    b.extend_from_slice(&PVH_MAGIC.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // version
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&u32::from(initrd.is_some()).to_le_bytes());
    b.extend_from_slice(&(if initrd.is_some() { modlist } else { 0 }).to_le_bytes());
    b.extend_from_slice(&CMDLINE_START.to_le_bytes());
    b.extend_from_slice(&rsdp.unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&memmap.to_le_bytes());
    b.extend_from_slice(&(e820.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.resize((memmap - PVH_INFO_START) as usize, 0);
    for e in e820 {
        b.extend_from_slice(&e.addr.to_le_bytes());
        b.extend_from_slice(&e.size.to_le_bytes());
        b.extend_from_slice(&e.kind.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
    }
    if let Some(i) = initrd {
        b.extend_from_slice(&i.addr.to_le_bytes());
        b.extend_from_slice(&i.size.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
    }
    mem.write_slice(&b, GuestAddress(PVH_INFO_START))
        .map_err(|_| LoadError::GuestWrite {
            what: "PVH start info",
            addr: PVH_INFO_START,
        })?;
    Ok(PVH_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::MemoryLayout;

    #[test]
    fn nokaslr_clears_the_kaslr_flag_and_nothing_else() {
        let f = LOADED_HIGH | KASLR_FLAG;
        assert_eq!(honour_nokaslr(f, "console=ttyS0 nokaslr ro"), LOADED_HIGH);
        assert_eq!(honour_nokaslr(f, "console=ttyS0 ro"), f);
        assert_eq!(honour_nokaslr(f, "nokaslr=1"), f, "only the bare word");
    }

    #[test]
    fn zero_page_fields() {
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
    }

    #[test]
    fn rejects_non_kernels_and_long_cmdlines() {
        let l = MemoryLayout::new(64).unwrap();
        let mem = l.allocate().unwrap();
        let dir = std::env::temp_dir().join(format!("colinux-loader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("junk");
        std::fs::write(&f, vec![0u8; 8192]).unwrap();
        let err = load_kernel(&mem, &f).unwrap_err().to_string();
        assert!(err.contains("junk"), "{err}");
        assert!(matches!(
            load_cmdline(&mem, &"x".repeat(100), 50),
            Err(LoadError::CmdlineTooLong { len: 100, max: 50 })
        ));
        load_cmdline(&mem, "console=ttyS0", 2047).unwrap();
        let mut back = [0u8; 14];
        mem.read_slice(&mut back, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&back, b"console=ttyS0\0");
        let big = dir.join("big");
        std::fs::write(&big, vec![1u8; 70 << 20]).unwrap();
        assert!(matches!(
            load_initrd(&mem, &l, &big, 0x7fff_ffff, 0x200_0000),
            Err(LoadError::InitrdTooBig { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
