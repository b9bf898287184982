//! Snapshots of what the default machine hands the kernel: the zero page, the
//! e820 map, the MP table and the ACPI tables. A change to any of them shows up
//! as a snapshot diff to review.

use colinux_driver::acpi::{self, AcpiConfig};
use colinux_driver::boot::loader::{
    build_zero_page, synthesized_header, LoadedInitrd, ZeroPageConfig,
};
use colinux_driver::boot::setup::mmio64_window;
use colinux_driver::layout::{MemoryLayout, BIOS_AREA_START};
use colinux_driver::mptable::{self, MPTABLE_START};
use vm_memory::ByteValued;

/// The default machine of these snapshots: 1 vCPU, 256 MiB (what `--cpus`
/// defaults to, and the harness's usual guest size).
const DEFAULT_MIB: u64 = 256;

/// Hex dump of the 16-byte rows that are not all zero.
fn hexdump(base: u64, bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .filter(|(_, row)| row.iter().any(|&b| b != 0))
        .map(|(i, row)| {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:08x}: {}", base + 16 * i as u64, hex.join(" "))
        })
        .collect()
}

#[test]
fn e820_default() {
    insta::assert_yaml_snapshot!(MemoryLayout::new(DEFAULT_MIB).unwrap().e820());
}

#[test]
fn e820_above_the_pci_hole() {
    insta::assert_yaml_snapshot!(MemoryLayout::new(4096).unwrap().e820());
}

#[test]
fn zero_page_default() {
    let layout = MemoryLayout::new(DEFAULT_MIB).unwrap();
    let e820 = layout.e820();
    let zp = build_zero_page(&ZeroPageConfig {
        header: synthesized_header(),
        cmdline_len: "console=ttyS0".len(),
        initrd: Some(LoadedInitrd {
            addr: 0x0f80_0000,
            size: 0x7f_f000,
        }),
        e820: &e820,
        rsdp: Some(BIOS_AREA_START),
    });
    insta::assert_yaml_snapshot!(hexdump(
        colinux_driver::layout::ZERO_PAGE_START,
        zp.as_slice()
    ));
}

#[test]
fn mptable_default() {
    insta::assert_yaml_snapshot!(hexdump(MPTABLE_START, &mptable::build(1, 0, MPTABLE_START)));
}

#[test]
fn acpi_default() {
    let layout = MemoryLayout::new(DEFAULT_MIB).unwrap();
    let t = acpi::build(
        &AcpiConfig {
            cpus: 1,
            ioapic_id: 0,
            mmio64: Some(mmio64_window(&layout)),
        },
        BIOS_AREA_START,
    );
    insta::assert_yaml_snapshot!(hexdump(t.base, &t.blob));
}
