//! A virtio driver for the scripted guest, written the way Linux's is: PCI
//! discovery through the configuration ports, the virtio-pci capabilities,
//! MSI-X, feature negotiation, split virtqueues in guest RAM, doorbell writes
//! (MMIO exits) and interrupt-driven completion. It drives the daemon's real
//! devices through the real buses, so nothing on the device side is mocked.

pub mod blk;
pub mod net;
pub mod pci;
pub mod transport;
pub mod virtq;

use crate::guest::{GuestError, GuestResult};

/// A bump allocator over a range of guest RAM the driver owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestAlloc {
    next: u64,
    end: u64,
}

impl GuestAlloc {
    /// Hands out `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        GuestAlloc { next: start, end }
    }

    /// `size` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, size: u64, align: u64) -> GuestResult<u64> {
        let a = self.next.checked_add(align - 1).map(|x| x & !(align - 1));
        match a.and_then(|a| a.checked_add(size).map(|e| (a, e))) {
            Some((a, e)) if e <= self.end => {
                self.next = e;
                Ok(a)
            }
            _ => Err(GuestError::Device(format!(
                "guest allocator: {size:#x} bytes do not fit below {:#x}",
                self.end
            ))),
        }
    }

    /// Carves a sub-allocator of `size` bytes out of this one.
    pub fn split(&mut self, size: u64) -> GuestResult<GuestAlloc> {
        let a = self.alloc(size, 4096)?;
        Ok(GuestAlloc::new(a, a + size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_aligns_and_refuses_overflow() {
        let mut a = GuestAlloc::new(0x1001, 0x4000);
        assert_eq!(a.alloc(16, 16).unwrap(), 0x1010);
        assert_eq!(a.alloc(1, 4096).unwrap(), 0x2000);
        let mut s = a.split(0x1000).unwrap();
        assert_eq!(s.alloc(0x1000, 1).unwrap(), 0x3000);
        assert!(s.alloc(1, 1).is_err());
        assert!(a.alloc(1, 1).is_err());
        assert!(GuestAlloc::new(u64::MAX - 4, u64::MAX).alloc(8, 1).is_err());
    }
}
