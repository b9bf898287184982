//! The PVH start info (`struct hvm_start_info`) for ELF kernels entered
//! through their PVH note: the memory map, the initrd as module 0, the
//! command line and the RSDP, at [`PVH_INFO_START`] for the kernel to find
//! in `%ebx`.
//!
//! The structures are linux-loader's `start_info` bindings, written by its
//! `PvhBootConfigurator`.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::LoadError;
use super::initrd::LoadedInitrd;
use crate::arch::x86_64::layout::{E820Entry, CMDLINE_START, PVH_INFO_START};

/// PVH `hvm_start_info.magic`.
pub const PVH_MAGIC: u32 = 0x336e_c578;

/// Where the memory map goes: after the start info, 16-byte aligned.
const MEMMAP_START: u64 =
    PVH_INFO_START + (std::mem::size_of::<hvm_start_info>() as u64).next_multiple_of(16);

/// Writes `hvm_start_info` at [`PVH_INFO_START`], followed by the memory map and
/// the initrd module entry; returns its address for `%rbx`.
pub fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    e820: &[E820Entry],
    initrd: Option<LoadedInitrd>,
    rsdp: Option<u64>,
) -> Result<u64, LoadError> {
    let modlist =
        MEMMAP_START + (std::mem::size_of::<hvm_memmap_table_entry>() * e820.len()) as u64;
    let info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { modlist } else { 0 },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp.unwrap_or(0),
        memmap_paddr: MEMMAP_START,
        memmap_entries: e820.len() as u32,
        ..Default::default()
    };
    let memmap: Vec<hvm_memmap_table_entry> = e820
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(MEMMAP_START));
    if let Some(i) = initrd {
        let module = hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(modlist));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(|_| LoadError::GuestWrite {
        what: "PVH start info",
        addr: PVH_INFO_START,
    })?;
    Ok(PVH_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::MemoryLayout;
    use vm_memory::Bytes;

    /// The bytes the hand-written writer produced before linux-loader's
    /// configurator took over, for the same inputs.
    fn hand_written(e820: &[E820Entry], initrd: Option<LoadedInitrd>, rsdp: u64) -> Vec<u8> {
        let memmap = PVH_INFO_START + 64;
        let modlist = memmap + 24 * e820.len() as u64;
        let mut b = Vec::new();
        b.extend_from_slice(&PVH_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&u32::from(initrd.is_some()).to_le_bytes());
        b.extend_from_slice(&(if initrd.is_some() { modlist } else { 0 }).to_le_bytes());
        b.extend_from_slice(&CMDLINE_START.to_le_bytes());
        b.extend_from_slice(&rsdp.to_le_bytes());
        b.extend_from_slice(&memmap.to_le_bytes());
        b.extend_from_slice(&(e820.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.resize(64, 0);
        for e in e820 {
            b.extend_from_slice(&e.addr.to_le_bytes());
            b.extend_from_slice(&e.size.to_le_bytes());
            b.extend_from_slice(&e.kind.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        if let Some(i) = initrd {
            b.extend_from_slice(&i.addr.to_le_bytes());
            b.extend_from_slice(&i.size.to_le_bytes());
            b.extend_from_slice(&[0; 16]);
        }
        b
    }

    #[test]
    fn same_bytes_as_the_hand_written_writer() {
        let l = MemoryLayout::new(4096).unwrap();
        let e820 = l.e820();
        for initrd in [
            None,
            Some(LoadedInitrd {
                addr: 0x1000_0000,
                size: 0x1234,
            }),
        ] {
            let mem = l.allocate().unwrap();
            assert_eq!(
                write_pvh_start_info(&mem, &e820, initrd, Some(0xe0000)).unwrap(),
                PVH_INFO_START
            );
            let want = hand_written(&e820, initrd, 0xe0000);
            let mut got = vec![0u8; want.len()];
            mem.read_slice(&mut got, GuestAddress(PVH_INFO_START))
                .unwrap();
            assert_eq!(got, want);
        }
    }
}
