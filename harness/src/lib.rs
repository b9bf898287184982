//! Boots a host VM under QEMU with nested KVM and runs coLinux scenarios inside it.
//!
//! - [`images`]: kernel, guest initramfs, rootfs.ext4, host initramfs (cached).
//! - [`qemu`]: the QEMU bridge over std::process (command line, console, deadlines).
//! - [`accel`]: KVM-or-TCG choice for the host VM, probed and cached.
//! - [`scenario`], [`runner`], [`checks`], [`snapshot`], [`report`]: scenarios as data.
//! - [`inner`]: the inner QEMU reference monitor derived from colinux.conf.
//! - [`infra`]: host-VM kernel faults (nested SVM under TCG) told apart from monitor failures.
//! - [`watchdog`], [`qmp`], [`host_state`]: a silent host VM caught per phase and by its
//!   heartbeat, its state asked of QEMU over QMP and judged.
//!
//! The file protocol between the harness, the host VM and the guest is
//! documented in vm-images/README.md.

// Only `guard` (signals and process groups) needs unsafe code.
#![deny(unsafe_code)]

pub mod accel;
pub mod checks;
pub mod conf;
pub mod daemon;
#[allow(unsafe_code)]
pub mod guard;
pub mod host_state;
pub mod images;
pub mod infra;
pub mod inner;
pub mod paths;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod snapshot;
pub mod util;
pub mod watchdog;
pub mod workdisk;
