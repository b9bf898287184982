//! PCI bus 0 for a firmware-less guest: host bridge at 00:00.0, configuration
//! mechanism #1 on ports 0xCF8..0xCFF (Linux finds it with `pci=conf1` or by its
//! own direct probe, no ACPI needed), BARs placed like firmware would place them,
//! and MSI-X.
//!
//! # Wiring it into the VMM
//!
//! ```ignore
//! use std::sync::{Arc, Mutex};
//! use colinux_devices::pci::{MmioWindow, PciConfigIo, PciMmio, PciRoot};
//! use colinux_devices::virtio::{blk::BlockDevice, net::NetDevice, pci::VirtioPciDevice};
//! use colinux_devices::block::DiskImage;
//!
//! let window = MmioWindow { base: 0xc000_0000, size: 0x1000_0000 }; // not RAM, below the IOAPIC
//! let mut root = PciRoot::new(window);
//! // cobdN: the daemon resolves the path; errors name it and stop the start.
//! let image = DiskImage::open(&path, conf_says_read_only)?;
//! root.add_device(Box::new(VirtioPciDevice::new(
//!     BlockDevice::new(image, "cobd0"), mem.clone(), sink.clone(), Some(10))))?;
//! root.add_device(Box::new(VirtioPciDevice::new(
//!     NetDevice::new(backend, mac), mem.clone(), sink.clone(), Some(11))))?;
//! let root = Arc::new(Mutex::new(root));
//! pio_bus.insert(Arc::new(Mutex::new(PciConfigIo::new(root.clone()))), 0xcf8, 8)?;
//! mmio_bus.insert_shared(Arc::new(PciMmio::new(root.clone())), window.base, window.size)?;
//! ```
//!
//! * Locking: every device has its own lock ([`PciRoot`] is a handle; MMIO
//!   dispatch reads a decode snapshot and locks only the device hit), so a
//!   device stuck in a long request delays only accesses to itself. Insert
//!   [`PciMmio`] with `insert_shared`, so the bus adds no lock of its own.
//!
//! * BARs: `add_device` places each BAR in `window` (naturally aligned, in
//!   order). The guest may move them; [`PciMmio`] (or
//!   [`PciRoot::mmio_read`]/[`PciRoot::mmio_write`] for any address) always
//!   dispatches by the BAR's current value, so the MMIO bus never changes. A BAR
//!   decodes only while the command register's memory bit is set.
//! * MSI-X: table and PBA live in the device's BAR; messages leave through
//!   [`InterruptSink::send_msi`](crate::interrupt::InterruptSink::send_msi)
//!   (`KVM_SIGNAL_MSI`). The `intx_irq` given to a device is used only while the
//!   guest has not enabled MSI-X, via `set_irq_line` (level, lowered when the
//!   guest reads the ISR); list it in the MP table's PCI interrupt entries.
//! * ioeventfd (optional): [`PciRoot::notify_regions`] lists every queue doorbell
//!   (address, width 2, slot, queue); register them with `KVM_IOEVENTFD` and call
//!   [`PciRoot::queue_notify`] when one fires. Re-read the list when
//!   [`PciRoot::layout_generation`] changes (the guest moved a BAR). Without
//!   ioeventfds the MMIO write itself kicks the queue.
//! * Backends (net rx): after each event, poll the fds of
//!   [`PciRoot::backend_fds`] and call [`PciRoot::process_backend`] with the slot
//!   when one is readable. A device waiting for guest buffers leaves the list
//!   until the guest kicks its queue.

pub mod config;
mod device;
pub mod host_bridge;
pub mod msix;
mod root;

pub use device::PciDevice;
pub use root::{
    DeviceGuard, MmioWindow, NotifyRegion, PciConfigIo, PciError, PciMmio, PciRoot, SLOTS,
};
