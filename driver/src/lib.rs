//! The coLinux-rs monitor: guest memory, page tables, boot state and the KVM world switch.
//!
//! - [`hypervisor`]: the `Hypervisor` → `Vm` → `Vcpu` traits the daemon and
//!   the `sim` crate build machines through, [`VmExit`](hypervisor::VmExit),
//!   and the KVM backend with its host probe ([`hypervisor::kvm`]);
//! - [`arch::x86_64`]: everything x86 about booting a stock kernel (memory
//!   layout, boot protocol, page tables, CPU state, ACPI, MP table, PCI
//!   interrupt routing);
//! - [`ram`]: host mappings for guest RAM.
//!
//! The crate cannot forbid `unsafe` (guest RAM is an `mmap`, KVM is ioctls on
//! it), so every `unsafe` block says why it is sound, and clippy holds it to
//! that.

#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

pub mod arch;
pub mod hypervisor;
pub mod ram;
