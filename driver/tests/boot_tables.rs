//! Snapshots of what the default machine hands the kernel: the zero page, the
//! e820 map, the MP table and the ACPI tables. A change to any of them shows up
//! as a snapshot diff to review.

use colinux_driver::arch::x86_64::acpi::{self, AcpiConfig};
use colinux_driver::arch::x86_64::boot::bzimage::synthesized_header;
use colinux_driver::arch::x86_64::boot::initrd::LoadedInitrd;
use colinux_driver::arch::x86_64::boot::zero_page::{build_zero_page, ZeroPageConfig};
use colinux_driver::arch::x86_64::layout::{mmio64_window, MemoryLayout, BIOS_AREA_START};
use colinux_driver::arch::x86_64::mptable::{self, MPTABLE_START};
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
        colinux_driver::arch::x86_64::layout::ZERO_PAGE_START,
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
            extra_com: 0,
        },
        BIOS_AREA_START,
    );
    insta::assert_yaml_snapshot!(hexdump(t.base, &t.blob));
}

/// Reads an AML PkgLength at `b[*at]`, moving past it.
fn pkg_len(b: &[u8], at: &mut usize) -> usize {
    let lead = b[*at];
    let extra = usize::from(lead >> 6);
    let mut len = if extra == 0 {
        usize::from(lead & 0x3f)
    } else {
        usize::from(lead & 0xf)
    };
    for i in 0..extra {
        len |= usize::from(b[*at + 1 + i]) << (4 + 8 * i);
    }
    *at += 1 + extra;
    len
}

/// Reads an AML integer constant at `b[*at]`, moving past it.
fn aml_int(b: &[u8], at: &mut usize) -> u64 {
    let (n, v) = match b[*at] {
        0x00 => (0, 0),
        0x01 => (0, 1),
        0x0a => (1, u64::from(b[*at + 1])),
        0x0b => (2, u64::from(u16::from_le_bytes([b[*at + 1], b[*at + 2]]))),
        0x0c => (
            4,
            u64::from(u32::from_le_bytes(b[*at + 1..*at + 5].try_into().unwrap())),
        ),
        op => panic!("not an integer: {op:#x} at {at}"),
    };
    *at += 1 + n;
    v
}

/// The DSDT's `_PRT` of the default machine, decoded: one line per entry.
#[test]
fn acpi_pci_routing_table() {
    let layout = MemoryLayout::new(DEFAULT_MIB).unwrap();
    let t = acpi::build(
        &AcpiConfig {
            cpus: 1,
            ioapic_id: 0,
            mmio64: Some(mmio64_window(&layout)),
            extra_com: 0,
        },
        BIOS_AREA_START,
    );
    let (_, off, len) = t.tables.iter().find(|(n, _, _)| n == "DSDT").unwrap();
    let dsdt = &t.blob[*off..off + len];
    let name = dsdt
        .windows(5)
        .position(|w| w == b"\x08_PRT")
        .expect("the DSDT has a _PRT");
    let mut at = name + 5;
    assert_eq!(dsdt[at], 0x12, "_PRT is a package");
    at += 1;
    let end = at + pkg_len(dsdt, &mut at);
    let count = usize::from(dsdt[at]);
    at += 1;
    let mut lines = Vec::new();
    for _ in 0..count {
        assert_eq!(dsdt[at], 0x12);
        at += 1;
        pkg_len(dsdt, &mut at);
        assert_eq!(dsdt[at], 4, "address, pin, source, source index");
        at += 1;
        let addr = aml_int(dsdt, &mut at);
        let pin = aml_int(dsdt, &mut at);
        let source = aml_int(dsdt, &mut at);
        let gsi = aml_int(dsdt, &mut at);
        assert_eq!(source, 0, "static GSI routing, no link device");
        lines.push(format!(
            "slot {:02} INT{}# -> GSI {gsi}",
            addr >> 16,
            (b'A' + pin as u8) as char
        ));
        assert_eq!(addr & 0xffff, 0xffff, "any function");
    }
    assert_eq!(at, end, "package length");
    insta::assert_yaml_snapshot!(lines);
}

/// The MP table's I/O interrupt entries from the PCI bus, decoded.
#[test]
fn mptable_pci_interrupts() {
    let t = mptable::build(2, 0, MPTABLE_START);
    let table = &t[16..];
    let count = u16::from_le_bytes([table[34], table[35]]);
    let mut at = 44;
    let mut lines = Vec::new();
    for _ in 0..count {
        let e = &table[at..];
        at += if e[0] == 0 { 20 } else { 8 };
        if e[0] == 3 && e[4] == mptable::BUS_PCI {
            let flags = u16::from_le_bytes([e[2], e[3]]);
            lines.push(format!(
                "type {} bus PCI irq {:#04x} (slot {:02} INT{}#) -> IOAPIC {} pin {}, polarity {}, trigger {}",
                e[1],
                e[5],
                e[5] >> 2,
                (b'A' + (e[5] & 3)) as char,
                e[6],
                e[7],
                match flags & 3 { 1 => "high", 3 => "low", _ => "conforming" },
                match (flags >> 2) & 3 { 1 => "edge", 3 => "level", _ => "conforming" },
            ));
        }
    }
    assert_eq!(at, table.len());
    insta::assert_yaml_snapshot!(lines);
}
