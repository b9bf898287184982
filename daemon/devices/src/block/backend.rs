//! [`BlockBackend`]: what virtio-blk needs from the storage behind `cobdN`.
//!
//! The daemon serves a [`DiskImage`](super::DiskImage); tests put other
//! backends behind the same device (e.g. one that fails or stalls chosen
//! requests) to check how the device and the guest react.

use std::io;

use super::{DiskImage, SECTOR_SIZE};

/// Storage a virtio-blk device serves requests from.
///
/// Offsets and lengths are in bytes; the device only passes whole sectors
/// inside [`BlockBackend::sectors`]. An `Err` from any operation is reported
/// to the guest as `VIRTIO_BLK_S_IOERR`; the device goes on serving.
pub trait BlockBackend: Send {
    /// A name for logs (the image path, for a file).
    fn name(&self) -> String;

    /// Whether the guest may only read.
    fn read_only(&self) -> bool;

    /// Size in bytes.
    fn size(&self) -> u64;

    /// Size in 512-byte sectors (a partial last sector is not counted).
    fn sectors(&self) -> u64 {
        self.size() / SECTOR_SIZE
    }

    /// Whether [`BlockBackend::discard`] is supported.
    fn supports_discard(&self) -> bool;

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes everything written so far durable.
    fn flush(&self) -> io::Result<()>;

    /// Deallocates `[offset, offset + len)`; it then reads as zeros.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Zeroes `[offset, offset + len)`, deallocating it if `unmap` allows.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()>;
}

impl BlockBackend for DiskImage {
    fn name(&self) -> String {
        self.path().display().to_string()
    }
    fn read_only(&self) -> bool {
        DiskImage::read_only(self)
    }
    fn size(&self) -> u64 {
        DiskImage::size(self)
    }
    fn sectors(&self) -> u64 {
        DiskImage::sectors(self)
    }
    fn supports_discard(&self) -> bool {
        DiskImage::supports_discard(self)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        DiskImage::read_at(self, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        DiskImage::write_at(self, buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        DiskImage::flush(self)
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        DiskImage::discard(self, offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        DiskImage::write_zeroes(self, offset, len, unmap)
    }
}

impl<B: BlockBackend + ?Sized> BlockBackend for Box<B> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn supports_discard(&self) -> bool {
        (**self).supports_discard()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        (**self).write_zeroes(offset, len, unmap)
    }
}
