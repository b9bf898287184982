//! colinux-daemon: reads colinux.conf, assembles the machine and serves the guest's devices.
