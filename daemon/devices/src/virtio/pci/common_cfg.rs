//! The common configuration structure (`virtio_pci_common_cfg`, virtio 1.x
//! 4.1.4.3): feature words, MSI-X vector registers, device status and the
//! per-queue registers of the selected queue.

use virtio_queue::QueueT;
use vm_memory::GuestAddress;

use super::{status, VirtioPciDevice};
use crate::pci::msix::NO_VECTOR;
use crate::virtio::VirtioDevice;

impl<D: VirtioDevice> VirtioPciDevice<D> {
    pub(super) fn common_snapshot(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        let put = |s: &mut [u8; 64], off: usize, bytes: &[u8]| {
            s[off..off + bytes.len()].copy_from_slice(bytes)
        };
        let feat = |f: u64, sel: u32| match sel {
            0 => f as u32,
            1 => (f >> 32) as u32,
            _ => 0,
        };
        put(&mut s, 0, &self.device_feature_select.to_le_bytes());
        put(
            &mut s,
            4,
            &feat(self.offered_features(), self.device_feature_select).to_le_bytes(),
        );
        put(&mut s, 8, &self.driver_feature_select.to_le_bytes());
        put(
            &mut s,
            12,
            &feat(self.driver_features, self.driver_feature_select).to_le_bytes(),
        );
        put(&mut s, 16, &self.config_vector.to_le_bytes());
        put(&mut s, 18, &(self.queues.len() as u16).to_le_bytes());
        s[20] = self.status;
        s[21] = self.config_generation;
        put(&mut s, 22, &self.queue_select.to_le_bytes());
        let qs = usize::from(self.queue_select);
        if let Some(q) = self.queues.get(qs) {
            put(&mut s, 24, &q.size().to_le_bytes());
            put(&mut s, 26, &self.queue_vectors[qs].to_le_bytes());
            put(&mut s, 28, &u16::from(q.ready()).to_le_bytes());
            put(&mut s, 30, &self.queue_select.to_le_bytes());
            put(&mut s, 32, &q.desc_table().to_le_bytes());
            put(&mut s, 40, &q.avail_ring().to_le_bytes());
            put(&mut s, 48, &q.used_ring().to_le_bytes());
        }
        s
    }

    fn valid_vector(&self, v: u16) -> u16 {
        if v < self.msix.vectors() {
            v
        } else {
            NO_VECTOR
        }
    }

    pub(super) fn common_write(&mut self, offset: u64, data: &[u8]) {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        let v32 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let v16 = v32 as u16;
        let qs = usize::from(self.queue_select);
        let queue_locked = self.queues.get(qs).is_none_or(|q| q.ready());
        match (offset, data.len()) {
            (0, 4) => self.device_feature_select = v32,
            (8, 4) => self.driver_feature_select = v32,
            (12, 4) => {
                if self.status & status::FEATURES_OK == 0 {
                    match self.driver_feature_select {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xffff_ffff) | u64::from(v32)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xffff_ffff) | (u64::from(v32) << 32)
                        }
                        _ => {}
                    }
                }
            }
            (16, 2) => self.config_vector = self.valid_vector(v16),
            (20, 1) => self.write_status(data[0]),
            (22, 2) => self.queue_select = v16,
            (24, 2) if !queue_locked => {
                if self.queues[qs].try_set_size(v16).is_err() {
                    crate::guest_log!(debug, device = %self.device.name(), size = v16, "invalid queue size refused");
                }
            }
            (26, 2) if qs < self.queues.len() => self.queue_vectors[qs] = self.valid_vector(v16),
            (28, 2) if !queue_locked && v16 == 1 => self.queues[qs].set_ready(true),
            (32..=55, 4 | 8) if !queue_locked && offset.is_multiple_of(4) => {
                let q = &mut self.queues[qs];
                let field = (offset - 32) / 8;
                let (low, high) = match (offset % 8, data.len()) {
                    (0, 8) => (
                        Some(v32),
                        Some(u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
                    ),
                    (0, 4) => (Some(v32), None),
                    (4, 4) => (None, Some(v32)),
                    _ => (None, None),
                };
                let current = match field {
                    0 => q.desc_table(),
                    1 => q.avail_ring(),
                    _ => q.used_ring(),
                };
                let addr = GuestAddress(
                    u64::from(high.unwrap_or((current >> 32) as u32)) << 32
                        | u64::from(low.unwrap_or(current as u32)),
                );
                // The `try_` forms: the plain setters log a misaligned ring at
                // error level, unlimited.
                let r = match field {
                    0 => q.try_set_desc_table_address(addr),
                    1 => q.try_set_avail_ring_address(addr),
                    _ => q.try_set_used_ring_address(addr),
                };
                if r.is_err() {
                    crate::guest_log!(debug, device = %self.device.name(), field, addr = addr.0, "misaligned ring address refused");
                }
            }
            _ => {
                crate::guest_log!(debug, device = %self.device.name(), offset, len = data.len(), "ignored common cfg write")
            }
        }
    }
}
