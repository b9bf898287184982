//! An x86-64 PC without firmware, as a stock Linux kernel expects to find it.
//!
//! - [`layout`]: where RAM, the boot structures and the MMIO windows are;
//! - [`boot`]: the Linux boot protocol (kernel, initrd, command line, zero
//!   page or PVH start info);
//! - [`paging`]: the boot page tables; [`cpu`]: the boot CPU state, MSRs,
//!   LAPIC pins, CPUID;
//! - [`acpi`], [`mptable`] and [`pci_irq`]: how the kernel finds the CPUs,
//!   the interrupt controllers, the PCI host bridge and its interrupt wiring
//!   ([`checksum`] is the byte sum both table kinds close with);
//! - [`reset_vector`]: the few bytes at the reset vector that stand in for a
//!   BIOS reboot;
//! - [`setup`]: all of it put together for one guest and its vCPUs.
//!
//! Modelled on cloud-hypervisor's `arch::x86_64` and Firecracker's `arch`.

pub mod acpi;
pub mod boot;
pub mod checksum;
pub mod cpu;
pub mod layout;
pub mod mptable;
pub mod paging;
pub mod pci_irq;
pub mod reset_vector;
pub mod setup;
