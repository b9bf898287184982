//! Lock-free frame counters a backend keeps (readable through `&self`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::NetStats;

/// The four [`NetStats`] counters as atomics.
#[derive(Debug, Default)]
pub(crate) struct AtomicStats {
    tx_frames: AtomicU64,
    tx_dropped: AtomicU64,
    rx_frames: AtomicU64,
    rx_dropped: AtomicU64,
}

impl AtomicStats {
    /// One guest frame passed outward.
    pub fn tx_ok(&self) {
        self.tx_frames.fetch_add(1, Ordering::Relaxed);
    }
    /// One guest frame dropped.
    pub fn tx_drop(&self) {
        self.tx_dropped.fetch_add(1, Ordering::Relaxed);
    }
    /// One frame delivered to the guest.
    pub fn rx_ok(&self) {
        self.rx_frames.fetch_add(1, Ordering::Relaxed);
    }
    /// One frame bound for the guest dropped.
    pub fn rx_drop(&self) {
        self.rx_dropped.fetch_add(1, Ordering::Relaxed);
    }
    /// A consistent-enough copy for logs and tests.
    pub fn snapshot(&self) -> NetStats {
        NetStats {
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_dropped: self.tx_dropped.load(Ordering::Relaxed),
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
        }
    }
}
