//! Loading the kernel: an ELF vmlinux (through its PVH note, or the 64-bit
//! entry), a bzImage with an LZ4 payload (decompressed by the monitor:
//! [`super::vmlinux`]), or any other bzImage (its own decompressor runs in the
//! guest). The ELF and plain bzImage loaders are linux-loader's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::bzimage::{self, has_64bit_entry, synthesized_header, KASLR_FLAG};
use super::error::{io_err, LoadError};
use super::vmlinux;
use crate::arch::x86_64::layout::KERNEL_START;

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
    if !has_64bit_entry(&header) {
        let version = header.version;
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
    let Some(header) = bzimage::setup_header_of(&image) else {
        return Ok(None);
    };
    if !has_64bit_entry(&header) {
        return Ok(None);
    }
    // The kernel text stays at its link address, but the kernel still
    // randomizes its memory regions, as after the decompressor's KASLR.
    let mut header = header;
    header.loadflags |= KASLR_FLAG;
    match vmlinux::load_in_place(mem, &image) {
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
    let elf = match vmlinux::extract_vmlinux(&image) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::MemoryLayout;

    #[test]
    fn rejects_non_kernels() {
        let mem = MemoryLayout::new(64).unwrap().allocate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("junk");
        std::fs::write(&f, vec![0u8; 8192]).unwrap();
        let err = load_kernel(&mem, &f).unwrap_err().to_string();
        assert!(err.contains("junk"), "{err}");
    }
}
