//! What depends on the guest's architecture: how its memory is laid out, how
//! a kernel is booted, and how the machine is described to it. Only x86-64
//! exists; the hypervisor side ([`crate::hypervisor`]) does not depend on it
//! beyond the register types.

pub mod x86_64;
