//! An in-memory [`BlockBackend`] that checks the device's side of the
//! contract: whole sectors only, inside the disk, and nothing modifying a
//! read-only disk.

use std::io;
use std::sync::{Arc, Mutex};

use colinux_devices::block::BlockBackend;

/// Sector size the device promises to use.
const SECTOR: u64 = 512;

thread_local! {
    /// The initial contents, computed once per thread (the fuzzer makes a
    /// disk per input).
    static PATTERN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The disk's bytes, shared with the test.
pub type Contents = Arc<Mutex<Vec<u8>>>;

/// An in-memory disk.
pub struct MemDisk {
    data: Contents,
    read_only: bool,
    discard: bool,
}

impl MemDisk {
    /// A disk of `sectors` sectors, byte `i` holding `i * 7 + i / 512`
    /// (so every sector differs); returns the disk and its contents.
    pub fn new(sectors: u64, read_only: bool, discard: bool) -> (Self, Contents) {
        let len = (sectors * SECTOR) as usize;
        let data = PATTERN.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < len {
                *p = (0..len as u64)
                    .map(|i| (i.wrapping_mul(7) + i / SECTOR) as u8)
                    .collect();
            }
            p[..len].to_vec()
        });
        let data = Arc::new(Mutex::new(data));
        (
            MemDisk {
                data: data.clone(),
                read_only,
                discard,
            },
            data,
        )
    }

    fn check(&self, offset: u64, len: u64, modifies: bool) {
        let size = self.data.lock().unwrap().len() as u64;
        assert!(
            offset.is_multiple_of(SECTOR) && len.is_multiple_of(SECTOR),
            "backend access {offset:#x}+{len:#x} is not whole sectors"
        );
        assert!(
            offset.checked_add(len).is_some_and(|e| e <= size),
            "backend access {offset:#x}+{len:#x} past the disk's {size:#x} bytes"
        );
        assert!(
            !(modifies && self.read_only),
            "a read-only disk was modified at {offset:#x}+{len:#x}"
        );
    }
}

impl BlockBackend for MemDisk {
    fn name(&self) -> String {
        "memdisk".into()
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn supports_discard(&self) -> bool {
        self.discard
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(offset, buf.len() as u64, false);
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check(offset, buf.len() as u64, true);
        let mut d = self.data.lock().unwrap();
        d[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        assert!(self.discard, "discard on a disk without discard");
        self.write_zeroes(offset, len, true)
    }
    fn write_zeroes(&self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.check(offset, len, true);
        let mut d = self.data.lock().unwrap();
        d[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}
