//! Everything needed to start a kernel: CPU state, descriptor tables, the zero
//! page, the kernel and initrd images.

pub mod brand;
pub mod cpu;
pub mod gdt;
pub mod loader;
pub mod lz4;
pub mod setup;
pub mod vmlinux;
