//! The boot CPU: the register state a vCPU starts in ([`regs`], with its
//! descriptor table from [`gdt`]), the MSRs ([`msrs`]), the local APIC's
//! interrupt pins ([`lapic`]), and what CPUID tells the guest ([`cpuid`],
//! with the processor's name from [`brand`]).
//!
//! Everything here is pure data; [`crate::arch::x86_64::setup`] hands it to
//! a vCPU, and `colinux_sim::arch` checks it against the architecture's
//! consistency rules.

pub mod brand;
pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod msrs;
pub mod regs;

pub use msrs::boot_msrs;
pub use regs::{boot_cpu_state, boot_fpu, BootCpuState, EntryMode};
