//! Boots a host VM under QEMU with nested KVM and runs coLinux scenarios inside it.
