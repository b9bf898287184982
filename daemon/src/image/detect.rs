//! `colinux-image info`: what an image file is (ext2/3/4, swap or raw) and
//! how big it is.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::ext::{self, ExtInfo};
use super::size::format_size;
use super::swap::{self, SwapInfo};
use super::ImageError;

/// Bytes read from the start of an image to identify it.
const HEAD_LEN: u64 = 65536;

/// What the image holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ImageKind {
    /// An ext2/3/4 file system (the `type` field is its `fs_type`).
    Ext(ExtInfo),
    /// A Linux swap area.
    Swap(SwapInfo),
    /// Nothing recognised (empty, partitioned or another file system).
    Raw,
}

impl ImageKind {
    /// `ext2`/`ext3`/`ext4`, `swap` or `raw`.
    pub fn name(&self) -> &'static str {
        match self {
            ImageKind::Ext(e) => e.kind.name(),
            ImageKind::Swap(_) => "swap",
            ImageKind::Raw => "raw",
        }
    }
}

/// Facts about an image file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// Apparent size in bytes.
    pub size: u64,
    /// Bytes actually allocated on the host (less than `size` when sparse).
    pub allocated: u64,
    /// What it holds.
    pub kind: ImageKind,
}

/// Reads the start of `path` and identifies it.
pub fn detect(path: &Path) -> Result<ImageInfo, ImageError> {
    let io = |e| ImageError::io(path, e);
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(ImageError::WrongKind {
            path: path.into(),
            why: "is a directory, not an image file".into(),
        });
    }
    let mut head = Vec::new();
    file.take(HEAD_LEN).read_to_end(&mut head).map_err(io)?;
    let kind = if let Some(e) = ext::parse(&head) {
        ImageKind::Ext(e)
    } else if let Some(s) = swap::parse(&head) {
        ImageKind::Swap(s)
    } else {
        ImageKind::Raw
    };
    Ok(ImageInfo {
        size: meta.len(),
        allocated: meta.blocks() * 512,
        kind,
    })
}

impl fmt::Display for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "type:        {}", self.kind.name())?;
        writeln!(
            f,
            "size:        {} ({} bytes)",
            format_size(self.size),
            self.size
        )?;
        writeln!(
            f,
            "allocated:   {} ({} bytes)",
            format_size(self.allocated),
            self.allocated
        )?;
        match &self.kind {
            ImageKind::Ext(e) => {
                writeln!(f, "label:       {}", e.label.as_deref().unwrap_or("(none)"))?;
                writeln!(f, "uuid:        {}", e.uuid)?;
                writeln!(f, "block size:  {}", e.block_size)?;
                writeln!(
                    f,
                    "blocks:      {} ({})",
                    e.block_count,
                    format_size(e.fs_bytes())
                )?;
                writeln!(f, "free blocks: {}", e.free_blocks)?;
                writeln!(f, "inodes:      {} ({} free)", e.inode_count, e.free_inodes)?;
                if e.fs_bytes() < self.size {
                    writeln!(
                        f,
                        "note:        the file system is smaller than the file; `colinux-image resize` grows it"
                    )?;
                }
            }
            ImageKind::Swap(s) => {
                writeln!(f, "version:     {} (page size {})", s.version, s.page_size)?;
                writeln!(f, "pages:       {}", u64::from(s.last_page) + 1)?;
                writeln!(f, "label:       {}", s.label.as_deref().unwrap_or("(none)"))?;
                writeln!(f, "uuid:        {}", s.uuid.as_deref().unwrap_or("(none)"))?;
            }
            ImageKind::Raw => {}
        }
        Ok(())
    }
}
