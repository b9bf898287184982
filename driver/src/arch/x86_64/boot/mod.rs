//! The Linux x86 boot protocol: putting a kernel, its initrd and command line
//! in guest memory and describing the machine to it, as a bootloader would.
//!
//! - [`kernel`] loads an ELF vmlinux or a bzImage; for an LZ4 bzImage the
//!   monitor decompresses the payload itself ([`vmlinux`], with [`bzimage`]
//!   reading the header, [`lz4`] the stream, [`parallel`] spreading the
//!   blocks over the host's cores, [`elf`] the program headers);
//! - [`initrd`] and [`cmdline`] place the initrd and the command line;
//! - [`zero_page`] (64-bit entry) or [`pvh`] (PVH entry) tell the kernel
//!   where everything is;
//! - [`error`] is what can go wrong on the way.

pub mod bzimage;
pub mod cmdline;
pub mod elf;
pub mod error;
pub mod initrd;
pub mod kernel;
pub mod lz4;
pub mod parallel;
pub mod pvh;
pub mod vmlinux;
pub mod zero_page;
