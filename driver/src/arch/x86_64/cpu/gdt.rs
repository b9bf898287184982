//! Segment descriptors: encoding GDT entries and deriving the segment caches
//! (`kvm_segment`) that must agree with them.

use crate::hypervisor::SegmentRegister;

/// Flags+access word for a 64-bit ring-0 code segment (G=1, L=1, P=1, S=1, type 0xb).
pub const CODE64_FLAGS: u16 = 0xa09b;
/// Flags+access word for a flat 32-bit ring-0 code segment (G=1, D=1, type 0xb).
pub const CODE32_FLAGS: u16 = 0xc09b;
/// Flags+access word for a flat ring-0 data segment (G=1, D/B=1, type 0x3).
pub const DATA_FLAGS: u16 = 0xc093;
/// Flags+access word for a busy TSS (type 0xb, S=0, P=1).
pub const TSS_FLAGS: u16 = 0x008b;

/// Encodes a GDT entry from `flags` (access byte in bits 0..8, flags nibble in
/// bits 12..16, as in `0xa09b`), `base` and a 20-bit `limit`.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << (56 - 24))
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << (48 - 16))
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

/// Decodes GDT entry `entry` loaded through `selector` into the segment cache the
/// CPU would hold (limit scaled by G, as KVM expects).
pub fn segment_from_gdt(entry: u64, selector: u16) -> SegmentRegister {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    SegmentRegister {
        base,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(((entry >> 47) & 1) == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_entries() {
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        let cs = segment_from_gdt(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x8);
        assert_eq!(
            (cs.l, cs.db, cs.type_, cs.limit, cs.s, cs.present),
            (1, 0, 0xb, 0xffff_ffff, 1, 1)
        );
        let t = segment_from_gdt(gdt_entry(TSS_FLAGS, 0x1234_5678, 0x67), 0x18);
        assert_eq!((t.base, t.limit, t.g, t.s), (0x1234_5678, 0x67, 0, 0));
    }
}
