//! colinux-daemon: reads colinux.conf, assembles the machine and serves the guest's devices.

pub mod cli;
pub mod console_server;
pub mod image;
pub mod malloc_policy;
pub mod thread_stack;
pub mod unhonoured;
pub mod vmm;

/// Scenario capabilities this build implements (printed by
/// `colinux-daemon --capabilities`; the harness skips scenarios that need
/// anything missing). Each part adds its names as it lands: "boot", "cobd",
/// "net-slirp", ...
pub const CAPABILITIES: &[&str] = &[
    "boot",
    "cobd",
    "slirp",
    "net-slirp",
    "net-tuntap",
    "net-bridged",
    "intx",
    "reboot-in-place",
    "cofs",
    "vt-console",
];
