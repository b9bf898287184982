//! The split virtqueue the scripted guest's drivers use: the project's one
//! guest-side ring, in `colinux-virtq-driver` (the device crate's own tests
//! drive their devices with it too).

pub use colinux_virtq_driver::{
    need_event, Buf, RingError, SplitQueue, DESC_INDIRECT, DESC_NEXT, DESC_WRITE,
};
