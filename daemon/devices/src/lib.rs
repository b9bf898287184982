//! Devices the daemon gives the guest: the PCI host bridge, virtio-pci block and
//! network devices, the 8250 serial console and the i8042 reset line.
//!
//! Devices never talk to KVM directly. They are reached through [`bus::Bus`]
//! (port I/O and MMIO dispatch by address range) and they raise interrupts through
//! [`interrupt::InterruptSink`], which the daemon implements with KVM (MSI, irqfd,
//! IRQ lines) and the `sim` crate implements in software. That split lets the same
//! device code run under a real vCPU and under the simulated guest.

// Every unsafe block says why it is sound.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod block;
pub mod bus;
pub mod interrupt;
pub mod legacy;
pub mod pci;
pub mod virtio;

pub use colinux_net::guest_log;
/// Rate limiting of guest-triggered log lines (home: `colinux_net::ratelimit`).
pub use colinux_net::ratelimit;
