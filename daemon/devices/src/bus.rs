//! Address-range dispatch for port I/O and MMIO exits.
//!
//! A [`Bus`] maps non-overlapping ranges `[base, base + len)` to devices. An exit at
//! address `a` reaches the device whose range holds `a`, with the offset `a - base`.
//! Accesses that hit no device read as all ones and writes are dropped, as on a PC.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through a [`Bus`] range.
pub trait BusDevice: Send {
    /// Reads `data.len()` bytes at `offset` within the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` within the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device that synchronizes itself, reached through a [`Bus`] with no lock
/// of the bus's own (e.g. the PCI MMIO window, whose devices each have their
/// own lock): two vCPUs may be inside it at once.
pub trait SharedBusDevice: Send + Sync {
    /// Reads `data.len()` bytes at `offset` within the device's range.
    fn read(&self, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` within the device's range.
    fn write(&self, offset: u64, data: &[u8]);
}

/// Errors from inserting a range into a [`Bus`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range is empty.
    #[error("bus range at {base:#x} has zero length")]
    ZeroLength {
        /// Start of the rejected range.
        base: u64,
    },
    /// The new range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// Start of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
}

/// A shared handle to a device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// A device on a range: behind the bus's lock, or synchronizing itself.
#[derive(Clone)]
enum Entry {
    Locked(SharedDevice),
    Shared(Arc<dyn SharedBusDevice>),
}

/// Range-to-device map used for both the port I/O and the MMIO address spaces.
#[derive(Default, Clone)]
pub struct Bus {
    ranges: BTreeMap<u64, (u64, Entry)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        self.insert_entry(Entry::Locked(device), base, len)
    }

    /// Places a self-synchronizing `device` at `[base, base + len)`: the bus
    /// takes no lock around its accesses.
    pub fn insert_shared(
        &mut self,
        device: Arc<dyn SharedBusDevice>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        self.insert_entry(Entry::Shared(device), base, len)
    }

    fn insert_entry(&mut self, device: Entry, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength { base });
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        let overlaps = self
            .ranges
            .range(..end)
            .next_back()
            .is_some_and(|(&b, &(l, _))| b + l > base);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, (len, device));
        Ok(())
    }

    /// Removes the range starting at `base`, if any (used when a guest moves a
    /// BAR); returns the device if it was behind the bus's lock.
    pub fn remove(&mut self, base: u64) -> Option<SharedDevice> {
        match self.ranges.remove(&base)?.1 {
            Entry::Locked(d) => Some(d),
            Entry::Shared(_) => None,
        }
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (&base, (len, dev)) = self.ranges.range(..=addr).next_back()?;
        (addr - base < *len).then_some((addr - base, dev))
    }

    /// Dispatches a read; returns false (and fills `data` with 0xff) when no device
    /// holds `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, Entry::Locked(dev))) => {
                lock(dev).read(offset, data);
                true
            }
            Some((offset, Entry::Shared(dev))) => {
                dev.read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; returns false when no device holds `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, Entry::Locked(dev))) => {
                lock(dev).write(offset, data);
                true
            }
            Some((offset, Entry::Shared(dev))) => {
                dev.write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock: a device that panicked once
/// must not take the whole VM down on the next access.
fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_and_rejects_overlap() {
        let mut bus = Bus::new();
        let dev: SharedDevice = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        assert_eq!(
            bus.insert(dev.clone(), 0x3fc, 8),
            Err(BusError::Overlap {
                base: 0x3fc,
                len: 8
            })
        );
        assert_eq!(
            bus.insert(dev.clone(), 0x3f0, 9),
            Err(BusError::Overlap {
                base: 0x3f0,
                len: 9
            })
        );
        bus.insert(dev.clone(), 0x3f0, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b, [2]);
        assert!(!bus.read(0x400, &mut b));
        assert_eq!(b, [0xff]);
        assert!(bus.write(0x3f9, &[7]));
        assert!(!bus.write(0x3f8 + 8 + 8, &[7]));
    }
}
