//! Software model of the world switch: a scripted guest, page walker and architectural checks.

// Only `fd` (poll and fstat on host descriptors) needs unsafe code.
#![deny(unsafe_code)]

pub mod arch;
pub mod fault;
pub mod faulty_disk;
#[allow(unsafe_code)]
mod fd;
pub mod guest;
pub mod guest_virtio;
pub mod loopback;
pub mod machine;
pub mod paging;
pub mod trace;
pub mod vcpu;
pub mod vm;
mod vm_shared;
pub mod world;
