//! Reading the ext2/3/4 superblock (at byte 1024 of the image) to tell the
//! file system type, label and size without mounting anything.

/// Offset of the superblock in the image.
pub const SUPERBLOCK_OFFSET: usize = 1024;
/// Bytes of the superblock we read.
pub const SUPERBLOCK_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_64BIT: u32 = 0x80;
/// Incompatible features ext3 does not know (extents, 64bit, flex_bg, ...).
const INCOMPAT_EXT4_ONLY: u32 = 0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x8000 | 0x10000;
/// Read-only-compatible features beyond ext3 (huge_file, gdt_csum,
/// dir_nlink, extra_isize, metadata_csum, ...).
const RO_COMPAT_EXT4_ONLY: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x400 | 0x1000 | 0x2000;

/// Which member of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtType {
    /// No journal.
    Ext2,
    /// Journal, no ext4-only features.
    Ext3,
    /// ext4-only features (extents, 64bit, flex_bg, ...).
    Ext4,
}

impl ExtType {
    /// `ext2`, `ext3` or `ext4`.
    pub fn name(self) -> &'static str {
        match self {
            ExtType::Ext2 => "ext2",
            ExtType::Ext3 => "ext3",
            ExtType::Ext4 => "ext4",
        }
    }
}

/// What the superblock says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtInfo {
    /// ext2, ext3 or ext4.
    #[serde(rename = "fs_type")]
    pub kind: ExtType,
    /// Volume label, if set.
    pub label: Option<String>,
    /// Volume UUID.
    pub uuid: String,
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks in the file system.
    pub block_count: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Inodes.
    pub inode_count: u32,
    /// Free inodes.
    pub free_inodes: u32,
}

impl ExtInfo {
    /// The file system's size in bytes.
    pub fn fs_bytes(&self) -> u64 {
        self.block_count.saturating_mul(self.block_size)
    }
}

/// Parses the superblock from the image's first bytes (at least 2048 of
/// them); `None` if there is no ext superblock or it is implausible.
pub fn parse(head: &[u8]) -> Option<ExtInfo> {
    let sb = head.get(SUPERBLOCK_OFFSET..SUPERBLOCK_OFFSET + SUPERBLOCK_LEN)?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16_at(0x38) != MAGIC {
        return None;
    }
    let log_block = u32_at(0x18);
    if log_block > 6 {
        return None;
    }
    let compat = u32_at(0x5C);
    let incompat = u32_at(0x60);
    let ro_compat = u32_at(0x64);
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        // An external journal device is not a file system users mount.
        return None;
    }
    let wide = incompat & INCOMPAT_64BIT != 0;
    let hi = |o: usize| if wide { u64::from(u32_at(o)) << 32 } else { 0 };
    let kind = if incompat & INCOMPAT_EXT4_ONLY != 0 || ro_compat & RO_COMPAT_EXT4_ONLY != 0 {
        ExtType::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        ExtType::Ext3
    } else {
        ExtType::Ext2
    };
    let uuid: [u8; 16] = sb[0x68..0x78].try_into().ok()?;
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let label = String::from_utf8_lossy(&name[..end]).into_owned();
    Some(ExtInfo {
        kind,
        label: (!label.is_empty()).then_some(label),
        uuid: super::swap::format_uuid(&uuid),
        block_size: 1024u64 << log_block,
        block_count: u64::from(u32_at(0x04)) | hi(0x150),
        free_blocks: u64::from(u32_at(0x0C)) | hi(0x158),
        inode_count: u32_at(0x00),
        free_inodes: u32_at(0x10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(compat: u32, incompat: u32, ro: u32) -> Vec<u8> {
        let mut img = vec![0u8; 2048];
        let sb = &mut img[1024..];
        sb[0x04..0x08].copy_from_slice(&1000u32.to_le_bytes());
        sb[0x18..0x1C].copy_from_slice(&2u32.to_le_bytes());
        sb[0x38..0x3A].copy_from_slice(&MAGIC.to_le_bytes());
        sb[0x5C..0x60].copy_from_slice(&compat.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0x64..0x68].copy_from_slice(&ro.to_le_bytes());
        sb[0x78..0x7C].copy_from_slice(b"root");
        img
    }

    #[test]
    fn types_by_features() {
        assert_eq!(parse(&superblock(0, 0, 0)).unwrap().kind, ExtType::Ext2);
        assert_eq!(
            parse(&superblock(COMPAT_HAS_JOURNAL, 0x2, 0x1))
                .unwrap()
                .kind,
            ExtType::Ext3
        );
        assert_eq!(
            parse(&superblock(COMPAT_HAS_JOURNAL, 0x40, 0))
                .unwrap()
                .kind,
            ExtType::Ext4
        );
        let i = parse(&superblock(0, 0, 0)).unwrap();
        assert_eq!(
            (i.block_size, i.block_count, i.label.as_deref()),
            (4096, 1000, Some("root"))
        );
        assert_eq!(i.fs_bytes(), 4096 * 1000);
    }

    #[test]
    fn rejects_non_ext() {
        assert_eq!(parse(&[0u8; 2048]), None);
        assert_eq!(parse(&[0u8; 1500]), None);
        let mut bad = superblock(0, 0, 0);
        bad[1024 + 0x18] = 40;
        assert_eq!(parse(&bad), None);
    }
}
