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

pub use colinux_virtq_driver::GuestAlloc;
