//! virtio-blk for `cobdN`: one request queue over a [`BlockBackend`] (in the
//! daemon a [`DiskImage`](crate::block::DiskImage)).
//!
//! Requests are served synchronously when the guest rings the doorbell (classic
//! `setcobd=sync`). Supported: `IN`, `OUT`, `FLUSH` (fdatasync before the
//! completion), `GET_ID` (the serial, `cobdN`, which Linux shows in
//! `/sys/block/vdX/serial`), `DISCARD` (hole punching, when the file system has
//! it) and `WRITE_ZEROES`. A read-only image offers `VIRTIO_BLK_F_RO` and answers
//! every modifying request with `VIRTIO_BLK_S_IOERR`. Data moves through a
//! bounded bounce buffer, so a request's size never decides host memory use.
//! A backend error fails only its request (`VIRTIO_BLK_S_IOERR`, logged with
//! the backend's name); the device serves the next one as usual.

use virtio_bindings::virtio_blk as vb;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use super::chain::{self, Chain};
use super::{
    drain_queue, feature, Completions, VirtioDevice, F_RING_EVENT_IDX, F_RING_INDIRECT_DESC,
    TYPE_BLOCK,
};
use crate::block::{BlockBackend, SECTOR_SIZE};

// The virtio-blk numbers, from `virtio-bindings` (feature bits as masks,
// statuses as the byte the device writes).

/// Feature: `seg_max` is valid.
pub const F_SEG_MAX: u64 = feature(vb::VIRTIO_BLK_F_SEG_MAX);
/// Feature: the device is read-only.
pub const F_RO: u64 = feature(vb::VIRTIO_BLK_F_RO);
/// Feature: `blk_size` is valid.
pub const F_BLK_SIZE: u64 = feature(vb::VIRTIO_BLK_F_BLK_SIZE);
/// Feature: the flush command exists.
pub const F_FLUSH: u64 = feature(vb::VIRTIO_BLK_F_FLUSH);
/// Feature: the discard command exists.
pub const F_DISCARD: u64 = feature(vb::VIRTIO_BLK_F_DISCARD);
/// Feature: the write-zeroes command exists.
pub const F_WRITE_ZEROES: u64 = feature(vb::VIRTIO_BLK_F_WRITE_ZEROES);
/// Request type: read.
pub const T_IN: u32 = vb::VIRTIO_BLK_T_IN;
/// Request type: write.
pub const T_OUT: u32 = vb::VIRTIO_BLK_T_OUT;
/// Request type: flush.
pub const T_FLUSH: u32 = vb::VIRTIO_BLK_T_FLUSH;
/// Request type: read the device ID (serial).
pub const T_GET_ID: u32 = vb::VIRTIO_BLK_T_GET_ID;
/// Request type: discard.
pub const T_DISCARD: u32 = vb::VIRTIO_BLK_T_DISCARD;
/// Request type: write zeroes.
pub const T_WRITE_ZEROES: u32 = vb::VIRTIO_BLK_T_WRITE_ZEROES;
/// Status: success.
pub const S_OK: u8 = vb::VIRTIO_BLK_S_OK as u8;
/// Status: I/O error (also every refused request).
pub const S_IOERR: u8 = vb::VIRTIO_BLK_S_IOERR as u8;
/// Status: unsupported request.
pub const S_UNSUPP: u8 = vb::VIRTIO_BLK_S_UNSUPP as u8;
/// Length of the ID returned by `GET_ID`.
pub const ID_LEN: usize = vb::VIRTIO_BLK_ID_BYTES as usize;
/// Queue size offered to the guest.
pub const QUEUE_SIZE: u16 = 256;
/// Largest discard/write-zeroes range in sectors.
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// Most discard/write-zeroes segments in one request.
const MAX_DISCARD_SEGS: u32 = 16;
const HEADER_LEN: u64 = 16;
const BOUNCE_LEN: usize = 64 * 1024;

/// Per-device counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests completed with any status.
    pub requests: u64,
    /// Chains refused by validation (returned with no status written).
    pub malformed: u64,
    /// Requests answered `IOERR` (including refused writes to a read-only disk).
    pub io_errors: u64,
    /// Requests answered `UNSUPP`.
    pub unsupported: u64,
}

/// A virtio block device.
pub struct BlockDevice {
    image: Box<dyn BlockBackend>,
    serial: String,
    stats: BlockStats,
    bounce: Vec<u8>,
}

impl BlockDevice {
    /// A device over `image` (a [`DiskImage`](crate::block::DiskImage) or any
    /// other backend) whose `GET_ID` answers `serial` (e.g. `cobd0`).
    pub fn new(image: impl BlockBackend + 'static, serial: &str) -> Self {
        Self::with_backend(Box::new(image), serial)
    }

    /// A device over an already boxed backend.
    pub fn with_backend(image: Box<dyn BlockBackend>, serial: &str) -> Self {
        BlockDevice {
            image,
            serial: serial.to_string(),
            stats: BlockStats::default(),
            bounce: vec![0; BOUNCE_LEN],
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// The backend serving the requests.
    pub fn backend(&self) -> &dyn BlockBackend {
        &*self.image
    }

    /// The `virtio_blk_config` fields this device offers (up to
    /// `write_zeroes_may_unmap`).
    fn config_bytes(&self) -> Vec<u8> {
        let mut c = vec![0u8; 60];
        c[0..8].copy_from_slice(&self.image.sectors().to_le_bytes());
        c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
        c[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DISCARD_SEGS.to_le_bytes());
        c[44..48].copy_from_slice(&8u32.to_le_bytes()); // discard alignment: 4 KiB
        c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&MAX_DISCARD_SEGS.to_le_bytes());
        c[56] = u8::from(self.image.supports_discard());
        c
    }

    /// Serves one validated chain; returns the used length (bytes written to the guest).
    fn execute(&mut self, c: &Chain, mem: &GuestMemoryMmap) -> u32 {
        let wlen = chain::total_len(&c.writable);
        if wlen == 0 {
            // No status byte to write: drop it (returned to the driver unused).
            self.stats.malformed += 1;
            return 0;
        }
        let data_in = wlen - 1;
        let (status, written) = self.request(c, mem, data_in);
        match status {
            S_OK => {}
            S_UNSUPP => self.stats.unsupported += 1,
            _ => self.stats.io_errors += 1,
        }
        self.stats.requests += 1;
        if !chain::scatter(mem, &c.writable, data_in, &[status]) {
            return 0;
        }
        u32::try_from(written + 1).unwrap_or(u32::MAX)
    }

    /// Runs the request; returns (status, data bytes written to the guest).
    fn request(&mut self, c: &Chain, mem: &GuestMemoryMmap, data_in: u64) -> (u8, u64) {
        let mut hdr = [0u8; HEADER_LEN as usize];
        if !chain::gather(mem, &c.readable, 0, &mut hdr) {
            return (S_IOERR, 0);
        }
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        let data_out = chain::total_len(&c.readable) - HEADER_LEN;
        let ro = self.image.read_only();
        match kind {
            T_IN => match self.range(sector, data_in) {
                Some(offset) => match self.read_into_guest(mem, c, offset, data_in) {
                    true => (S_OK, data_in),
                    false => (S_IOERR, 0),
                },
                None => (S_IOERR, 0),
            },
            T_OUT if ro => (S_IOERR, 0),
            T_OUT => match self.range(sector, data_out) {
                Some(offset) if self.write_from_guest(mem, c, offset, data_out) => (S_OK, 0),
                _ => (S_IOERR, 0),
            },
            T_FLUSH => match self.image.flush() {
                Ok(()) => (S_OK, 0),
                Err(e) => {
                    crate::guest_log!(warn, path = %self.image.name(), error = %e, "flush failed");
                    (S_IOERR, 0)
                }
            },
            T_GET_ID => {
                let n = data_in.min(ID_LEN as u64) as usize;
                let mut id = [0u8; ID_LEN];
                let s = self.serial.as_bytes();
                let k = s.len().min(ID_LEN);
                id[..k].copy_from_slice(&s[..k]);
                if n > 0 && chain::scatter(mem, &c.writable, 0, &id[..n]) {
                    (S_OK, n as u64)
                } else {
                    (S_IOERR, 0)
                }
            }
            T_DISCARD | T_WRITE_ZEROES if ro => (S_IOERR, 0),
            T_DISCARD if !self.image.supports_discard() => (S_UNSUPP, 0),
            T_DISCARD | T_WRITE_ZEROES => {
                (self.discard_or_zero(mem, c, data_out, kind == T_DISCARD), 0)
            }
            _ => (S_UNSUPP, 0),
        }
    }

    /// Byte offset of `sector` if `[sector, sector + len)` is a whole number of
    /// sectors inside the disk.
    fn range(&self, sector: u64, len: u64) -> Option<u64> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return None;
        }
        let end = sector.checked_add(len / SECTOR_SIZE)?;
        // Lazily: a guest's sector far past the end must not overflow here.
        (end <= self.image.sectors()).then(|| sector * SECTOR_SIZE)
    }

    fn read_into_guest(&mut self, mem: &GuestMemoryMmap, c: &Chain, offset: u64, len: u64) -> bool {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BOUNCE_LEN as u64) as usize;
            if let Err(e) = self.image.read_at(&mut self.bounce[..n], offset + done) {
                crate::guest_log!(warn, path = %self.image.name(), error = %e, "read failed");
                return false;
            }
            if !chain::scatter(mem, &c.writable, done, &self.bounce[..n]) {
                return false;
            }
            done += n as u64;
        }
        true
    }

    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        c: &Chain,
        offset: u64,
        len: u64,
    ) -> bool {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(BOUNCE_LEN as u64) as usize;
            if !chain::gather(mem, &c.readable, HEADER_LEN + done, &mut self.bounce[..n]) {
                return false;
            }
            if let Err(e) = self.image.write_at(&self.bounce[..n], offset + done) {
                crate::guest_log!(warn, path = %self.image.name(), error = %e, "write failed");
                return false;
            }
            done += n as u64;
        }
        true
    }

    fn discard_or_zero(&mut self, mem: &GuestMemoryMmap, c: &Chain, len: u64, discard: bool) -> u8 {
        if len == 0 || !len.is_multiple_of(16) || len / 16 > u64::from(MAX_DISCARD_SEGS) {
            return S_IOERR;
        }
        for i in 0..len / 16 {
            let mut seg = [0u8; 16];
            if !chain::gather(mem, &c.readable, HEADER_LEN + i * 16, &mut seg) {
                return S_IOERR;
            }
            let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
            let count = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
            if count > MAX_DISCARD_SECTORS || flags & !1 != 0 || (discard && flags != 0) {
                return S_UNSUPP;
            }
            let Some(offset) = self.range(sector, u64::from(count) * SECTOR_SIZE) else {
                return S_IOERR;
            };
            let bytes = u64::from(count) * SECTOR_SIZE;
            let r = if discard {
                self.image.discard(offset, bytes)
            } else {
                self.image.write_zeroes(offset, bytes, flags & 1 != 0)
            };
            if let Err(e) = r {
                crate::guest_log!(warn, path = %self.image.name(), error = %e, "discard/write-zeroes failed");
                return S_IOERR;
            }
        }
        S_OK
    }
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u16 {
        TYPE_BLOCK
    }
    fn pci_class(&self) -> u32 {
        0x01_80_00 // mass storage, other
    }
    fn name(&self) -> String {
        format!("virtio-blk {}", self.serial)
    }
    fn features(&self) -> u64 {
        let mut f = F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_RING_INDIRECT_DESC | F_RING_EVENT_IDX;
        if self.image.read_only() {
            f |= F_RO;
        } else {
            f |= F_WRITE_ZEROES;
            if self.image.supports_discard() {
                f |= F_DISCARD;
            }
        }
        f
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn config_space(&self) -> Vec<u8> {
        self.config_bytes()
    }
    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
    ) -> Completions {
        Completions::of_queue(queues, index, |queue| {
            drain_queue(queue, mem, |parsed| match parsed {
                Ok(c) => self.execute(&c, mem),
                Err(e) => {
                    self.stats.malformed += 1;
                    crate::guest_log!(debug, device = %format!("virtio-blk {}", self.serial), error = %e, "malformed request dropped");
                    0
                }
            })
        })
    }
}
