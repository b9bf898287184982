//! The Linux swap area header (version 1, "SWAPSPACE2"), written and read by
//! us so a swap file is ready for `swapon` without running `mkswap` in the
//! guest.
//!
//! Layout of the first page: 1024 bytes of boot-block room, then
//! `version: u32`, `last_page: u32`, `nr_badpages: u32`, `uuid: [u8; 16]`,
//! `volume_name: [u8; 16]`, padding, and the 10-byte signature `SWAPSPACE2`
//! at the very end of the page. Integers are in the guest's (x86,
//! little-endian) byte order.

/// Page size the header is written for (x86 guests).
pub const PAGE_SIZE: usize = 4096;
/// Offset of the header fields.
const INFO: usize = 1024;
/// The version 1 signature at the end of the first page.
pub const SIGNATURE: &[u8; 10] = b"SWAPSPACE2";
/// The obsolete version 0 signature (recognised, never written).
const OLD_SIGNATURE: &[u8; 10] = b"SWAP-SPACE";
/// Smallest usable swap area in pages (what `mkswap` requires).
pub const MIN_PAGES: u64 = 10;
/// Longest label.
pub const LABEL_LEN: usize = 16;

/// What a swap header says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwapInfo {
    /// 1 for SWAPSPACE2, 0 for the old format.
    pub version: u32,
    /// The page size whose last 10 bytes hold the signature.
    pub page_size: usize,
    /// Index of the last usable page.
    pub last_page: u32,
    /// Bad pages listed.
    pub bad_pages: u32,
    /// Volume UUID as text (`xxxxxxxx-xxxx-...`), version 1 only.
    pub uuid: Option<String>,
    /// Volume label, if set.
    pub label: Option<String>,
}

/// Builds the first page of a swap area of `size` bytes.
pub fn header(size: u64, uuid: [u8; 16], label: Option<&str>) -> Result<Vec<u8>, String> {
    let pages = size / PAGE_SIZE as u64;
    if pages < MIN_PAGES {
        return Err(format!(
            "too small: a swap area needs at least {MIN_PAGES} pages ({} KiB)",
            MIN_PAGES * PAGE_SIZE as u64 / 1024
        ));
    }
    let last_page = u32::try_from(pages - 1)
        .map_err(|_| "too large for the swap format (at most 2^32 pages)".to_string())?;
    let mut page = vec![0u8; PAGE_SIZE];
    page[INFO..INFO + 4].copy_from_slice(&1u32.to_le_bytes());
    page[INFO + 4..INFO + 8].copy_from_slice(&last_page.to_le_bytes());
    page[INFO + 8..INFO + 12].copy_from_slice(&0u32.to_le_bytes());
    page[INFO + 12..INFO + 28].copy_from_slice(&uuid);
    if let Some(l) = label {
        if l.len() > LABEL_LEN {
            return Err(format!("label `{l}` is longer than {LABEL_LEN} bytes"));
        }
        page[INFO + 28..INFO + 28 + l.len()].copy_from_slice(l.as_bytes());
    }
    page[PAGE_SIZE - SIGNATURE.len()..].copy_from_slice(SIGNATURE);
    Ok(page)
}

/// A random version-4 UUID from the operating system's random source.
pub fn random_uuid() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut u)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

/// Formats a UUID the usual way.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Reads a swap header from the start of an image (`head` should hold the
/// first 64 KiB, or the whole file if smaller). Tries the common page sizes.
pub fn parse(head: &[u8]) -> Option<SwapInfo> {
    for page_size in [4096usize, 8192, 16384, 65536] {
        let Some(sig) = head.get(page_size - 10..page_size) else {
            continue;
        };
        if sig == OLD_SIGNATURE {
            return Some(SwapInfo {
                version: 0,
                page_size,
                last_page: 0,
                bad_pages: 0,
                uuid: None,
                label: None,
            });
        }
        if sig != SIGNATURE {
            continue;
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let uuid: [u8; 16] = head[INFO + 12..INFO + 28].try_into().ok()?;
        let label_bytes = &head[INFO + 28..INFO + 28 + LABEL_LEN];
        let label_end = label_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(LABEL_LEN);
        let label = String::from_utf8_lossy(&label_bytes[..label_end]).into_owned();
        return Some(SwapInfo {
            version: u32_at(INFO),
            page_size,
            last_page: u32_at(INFO + 4),
            bad_pages: u32_at(INFO + 8),
            uuid: (uuid != [0; 16]).then(|| format_uuid(&uuid)),
            label: (!label.is_empty()).then_some(label),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let uuid = [0x12; 16];
        let page = header(64 << 20, uuid, Some("swap")).unwrap();
        assert_eq!(&page[4086..], b"SWAPSPACE2");
        let info = parse(&page).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.last_page, (64 << 20) / 4096 - 1);
        assert_eq!(info.label.as_deref(), Some("swap"));
        assert_eq!(
            info.uuid.as_deref(),
            Some("12121212-1212-1212-1212-121212121212")
        );
    }

    #[test]
    fn limits() {
        assert!(header(9 * 4096, [0; 16], None)
            .unwrap_err()
            .contains("too small"));
        assert!(header(10 * 4096, [0; 16], None).is_ok());
        assert!(header(1 << 20, [0; 16], Some("seventeen-chars-x")).is_err());
        assert!(header(1 << 46, [0; 16], None)
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn random_uuid_is_v4() {
        let u = random_uuid().unwrap();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 2);
        assert_ne!(u, random_uuid().unwrap());
    }

    #[test]
    fn not_swap() {
        assert_eq!(parse(&[0u8; 100]), None);
        assert_eq!(parse(&vec![0u8; 65536]), None);
    }
}
