//! The coLinux-rs monitor: guest memory, page tables, boot state and the KVM world switch.

pub mod acpi;
pub mod boot;
pub mod hypervisor;
pub mod kvm;
pub mod layout;
pub mod mptable;
pub mod paging;
pub mod pci_irq;
pub mod ram;
