//! How the daemon asks glibc's malloc to hold memory: one arena, and large
//! blocks always mapped on their own.
//!
//! Both settings answer what `bench net` found in the monitor's own memory
//! (issue 17), from allocations that are few and short-lived:
//! - glibc gives a thread its own arena the first time it allocates while
//!   another holds the main one, up to eight per core, and each arena keeps
//!   the pages it touched: one device thread's arena held 444 KiB, five
//!   others 120 KiB more. The daemon's threads seldom allocate on their hot
//!   paths, so they share the main arena.
//! - glibc maps a block of 128 KiB or more on its own, but once such a block
//!   is freed it raises that threshold to the block's size, and the next
//!   ones come from the heap, whose freed middle it keeps. libslirp's socket
//!   buffers are 128 KiB each (two per TCP connection): with one arena, the
//!   heap stayed 500 KiB larger after the transfers. A fixed threshold keeps
//!   them mapped, and unmapped when freed.
//!
//! A user who tunes malloc through the environment (`MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `GLIBC_TUNABLES`) is
//! left alone.

/// Blocks of this size or more are mapped on their own (glibc's default
/// starting threshold, held fixed).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// The environment variables through which a user tunes glibc's malloc.
const USER_TUNING: [&str; 4] = [
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
];

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// One arena and a fixed mapping threshold, as glibc agreed.
    Yes,
    /// The user tunes malloc through the environment (the variable named).
    UserTuned(&'static str),
    /// This C library has no such settings (not glibc), or refused them.
    No,
}

/// Applies the daemon's malloc policy unless the user tunes malloc. Call
/// before the first thread exists: an arena, once made, stays.
pub fn apply() -> Applied {
    if let Some(var) = USER_TUNING
        .into_iter()
        .find(|v| std::env::var_os(v).is_some())
    {
        return Applied::UserTuned(var);
    }
    set()
}

#[cfg(target_env = "gnu")]
fn set() -> Applied {
    let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes malloc parameters; it takes no pointers.
    let ok = unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1
    };
    if ok {
        Applied::Yes
    } else {
        Applied::No
    }
}

#[cfg(not(target_env = "gnu"))]
fn set() -> Applied {
    Applied::No
}
