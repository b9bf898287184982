//! The coLinux-rs monitor: guest memory, page tables, boot state and the KVM world switch.

pub mod hypervisor;
