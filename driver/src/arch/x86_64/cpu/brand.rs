//! The processor brand string the guest sees: CPUID leaves
//! 0x8000_0002..=0x8000_0004, 48 bytes read as EAX, EBX, ECX, EDX of each
//! leaf in turn, little-endian, NUL-padded. Linux prints it as `model name`
//! in `/proc/cpuinfo`; without it the kernel falls back to "family/model"
//! (e.g. `17/01`).
//!
//! As QEMU's `-cpu host` does, the guest gets the host CPU's own brand
//! ([`host_brand`]) when the host has one, otherwise [`FALLBACK_BRAND`].

use crate::hypervisor::CpuIdEntry;

/// Length of the brand string: three leaves of four 32-bit registers.
pub const BRAND_LEN: usize = 48;
/// The brand a guest sees when the host CPU reports none (or a blank one).
pub const FALLBACK_BRAND: &str = "coLinux-rs virtual CPU";
/// CPUID leaf whose EAX is the highest extended leaf.
pub const CPUID_EXT_MAX: u32 = 0x8000_0000;
/// First brand-string leaf.
pub const CPUID_BRAND_FIRST: u32 = 0x8000_0002;
/// Last brand-string leaf.
pub const CPUID_BRAND_LAST: u32 = 0x8000_0004;

/// The host CPU's brand string as its `cpuid` instruction reports it, or
/// `None` when its highest extended leaf is below [`CPUID_BRAND_LAST`].
/// The bytes are returned as read (possibly blank: see [`guest_brand`]).
#[cfg(target_arch = "x86_64")]
pub fn host_brand() -> Option<[u8; BRAND_LEN]> {
    use core::arch::x86_64::__cpuid;
    // SAFETY: `cpuid` exists on every x86-64 CPU and only reads identification
    // registers. (Newer toolchains declare the intrinsic safe.)
    #[allow(unused_unsafe)]
    let leaf = |function: u32| unsafe { __cpuid(function) };
    let max = leaf(CPUID_EXT_MAX).eax;
    if max & 0xffff_0000 != CPUID_EXT_MAX || max < CPUID_BRAND_LAST {
        return None;
    }
    let mut brand = [0u8; BRAND_LEN];
    for (chunk, function) in brand
        .chunks_exact_mut(16)
        .zip(CPUID_BRAND_FIRST..=CPUID_BRAND_LAST)
    {
        let r = leaf(function);
        for (dst, reg) in chunk.chunks_exact_mut(4).zip([r.eax, r.ebx, r.ecx, r.edx]) {
            dst.copy_from_slice(&reg.to_le_bytes());
        }
    }
    Some(brand)
}

/// Not an x86-64 host: no brand to pass on.
#[cfg(not(target_arch = "x86_64"))]
pub fn host_brand() -> Option<[u8; BRAND_LEN]> {
    None
}

/// The brand the guest gets: `host` when it has a character other than NUL
/// and space, otherwise [`FALLBACK_BRAND`] padded with NULs.
pub fn guest_brand(host: Option<[u8; BRAND_LEN]>) -> [u8; BRAND_LEN] {
    match host {
        Some(b) if b.iter().any(|&c| c != 0 && c != b' ') => b,
        _ => {
            let mut b = [0u8; BRAND_LEN];
            b[..FALLBACK_BRAND.len()].copy_from_slice(FALLBACK_BRAND.as_bytes());
            b
        }
    }
}

/// Makes the guest's CPUID table carry `brand`: leaves 0x8000_0002..=0x8000_0004
/// hold its 48 bytes (16 per leaf, in EAX, EBX, ECX, EDX, little-endian), added
/// when the hypervisor's list lacks them, and leaf 0x8000_0000's EAX (the
/// highest extended leaf) is raised to at least 0x8000_0004 (the leaf is added,
/// otherwise zero, when missing).
pub fn brand_string_leaves(entries: &mut Vec<CpuIdEntry>, brand: &[u8; BRAND_LEN]) {
    let word = |i: usize| u32::from_le_bytes([brand[i], brand[i + 1], brand[i + 2], brand[i + 3]]);
    let mut set = |function: u32, f: &dyn Fn(&mut CpuIdEntry)| {
        let mut found = false;
        for e in entries.iter_mut().filter(|e| e.function == function) {
            f(e);
            found = true;
        }
        if !found {
            let mut e = CpuIdEntry {
                function,
                ..Default::default()
            };
            f(&mut e);
            entries.push(e);
        }
    };
    set(CPUID_EXT_MAX, &|e| e.eax = e.eax.max(CPUID_BRAND_LAST));
    for (n, function) in (CPUID_BRAND_FIRST..=CPUID_BRAND_LAST).enumerate() {
        let base = 16 * n;
        set(function, &|e| {
            e.eax = word(base);
            e.ebx = word(base + 4);
            e.ecx = word(base + 8);
            e.edx = word(base + 12);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The brand as a guest's `cpuid` loop reads it back from `entries`.
    fn decode(entries: &[CpuIdEntry]) -> Vec<u8> {
        (CPUID_BRAND_FIRST..=CPUID_BRAND_LAST)
            .flat_map(|f| {
                let e = entries.iter().find(|e| e.function == f).unwrap();
                [e.eax, e.ebx, e.ecx, e.edx]
            })
            .flat_map(u32::to_le_bytes)
            .collect()
    }

    fn leaf(function: u32, eax: u32) -> CpuIdEntry {
        CpuIdEntry {
            function,
            eax,
            ..Default::default()
        }
    }

    fn padded(s: &str) -> [u8; BRAND_LEN] {
        let mut b = [0u8; BRAND_LEN];
        b[..s.len()].copy_from_slice(s.as_bytes());
        b
    }

    #[test]
    fn brand_leaves_decode_back_to_the_string() {
        let brand = padded(&format!("{:<47}x", "AMD EPYC 7B13 64-Core Processor"));
        let mut c = vec![leaf(0, 0xd), leaf(CPUID_EXT_MAX, 0x8000_0008)];
        brand_string_leaves(&mut c, &brand);
        assert_eq!(decode(&c), brand);
        // Byte order: the first four characters are EAX of 0x8000_0002, the
        // first character in its low byte (Intel SDM, CPUID brand string).
        let first = c.iter().find(|e| e.function == CPUID_BRAND_FIRST).unwrap();
        assert_eq!(first.eax, u32::from_le_bytes(*b"AMD "));
        assert_eq!(first.ebx, u32::from_le_bytes(*b"EPYC"));
        let last = c.iter().find(|e| e.function == CPUID_BRAND_LAST).unwrap();
        assert_eq!(last.edx, u32::from_le_bytes(*b"   x"));
    }

    #[test]
    fn missing_leaves_are_added_and_existing_ones_overwritten() {
        let mut c = vec![
            leaf(CPUID_EXT_MAX, 0x8000_0008),
            leaf(0x8000_0003, 0xdead_beef),
        ];
        brand_string_leaves(&mut c, &padded("coLinux"));
        for f in CPUID_BRAND_FIRST..=CPUID_BRAND_LAST {
            assert_eq!(c.iter().filter(|e| e.function == f).count(), 1, "{f:#x}");
        }
        assert_eq!(c.len(), 4);
        assert_eq!(&decode(&c)[..8], b"coLinux\0");
        assert!(decode(&c)[7..].iter().all(|&b| b == 0), "NUL-padded");
    }

    #[test]
    fn max_extended_leaf_is_raised_but_never_lowered() {
        let mut low = vec![leaf(CPUID_EXT_MAX, 0x8000_0001)];
        brand_string_leaves(&mut low, &padded("x"));
        assert_eq!(low[0].eax, CPUID_BRAND_LAST);

        let mut high = vec![leaf(CPUID_EXT_MAX, 0x8000_0021)];
        brand_string_leaves(&mut high, &padded("x"));
        assert_eq!(high[0].eax, 0x8000_0021);

        let mut none = vec![leaf(0, 0xd)];
        brand_string_leaves(&mut none, &padded("x"));
        let max = none.iter().find(|e| e.function == CPUID_EXT_MAX).unwrap();
        assert_eq!(max.eax, CPUID_BRAND_LAST);
    }

    #[test]
    fn blank_or_absent_host_brand_falls_back() {
        let fallback = padded(FALLBACK_BRAND);
        assert_eq!(guest_brand(None), fallback);
        assert_eq!(guest_brand(Some([0; BRAND_LEN])), fallback);
        assert_eq!(guest_brand(Some([b' '; BRAND_LEN])), fallback);
        let mut spaces_then_nul = [0u8; BRAND_LEN];
        spaces_then_nul[..12].fill(b' ');
        assert_eq!(guest_brand(Some(spaces_then_nul)), fallback);
        assert_eq!(&fallback[..FALLBACK_BRAND.len()], FALLBACK_BRAND.as_bytes());
        assert!(fallback[FALLBACK_BRAND.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_real_host_brand_is_kept_verbatim() {
        // Intel right-justifies some brands: leading spaces are part of it.
        let host = padded("       Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz");
        assert_eq!(guest_brand(Some(host)), host);
    }
}
