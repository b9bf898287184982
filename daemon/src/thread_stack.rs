//! The stack size of the daemon's threads, and keeping that choice from the
//! programs the daemon starts.
//!
//! Rust's default thread stack is exactly 2 MiB. Mapped on a 2 MiB boundary
//! (the first ones land right below guest RAM, which is aligned), such a
//! stack is backed by a transparent huge page on first touch where THP is
//! `always`, as in Debian's kernels: 2 MiB resident for a few KiB of stack
//! (seen in smaps after `bench cobd`: `AnonHugePages: 2048 kB` on a thread
//! stack). A stack under 2 MiB can never hold an aligned huge page.
//!
//! std takes the default of every `thread::spawn` from `RUST_MIN_STACK`, so
//! the daemon sets that variable for itself, once, before its first thread;
//! the programs it starts (`execN=`, the console) get the environment the
//! user gave, through [`keep_from`].

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The variable std reads for a spawned thread's default stack size.
const VAR: &str = "RUST_MIN_STACK";

/// The daemon's thread stack: 2 MiB less 64 KiB.
pub const THREAD_STACK: usize = 2 * 1024 * 1024 - 64 * 1024;
const _: () = assert!(
    THREAD_STACK < 2 * 1024 * 1024,
    "must stay under a huge page"
);

/// Whether [`set_default`] set the variable (the user had not).
static SET_HERE: AtomicBool = AtomicBool::new(false);

/// Makes [`THREAD_STACK`] the default of the daemon's threads unless the
/// user's `RUST_MIN_STACK` says otherwise. Call before any thread exists.
pub fn set_default() {
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, THREAD_STACK.to_string());
        SET_HERE.store(true, Ordering::SeqCst);
    }
}

/// Removes from `cmd`'s environment the variable [`set_default`] set, so a
/// program the daemon starts sees the user's environment unchanged.
pub fn keep_from(cmd: &mut Command) -> &mut Command {
    if SET_HERE.load(Ordering::SeqCst) {
        cmd.env_remove(VAR);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_sees() -> String {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ${RUST_MIN_STACK-unset}"]);
        let out = keep_from(&mut cmd).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    // nextest runs each test in its own process, so the environment is this
    // test's alone.
    #[test]
    fn the_daemon_gets_the_stack_and_its_children_do_not() {
        if std::env::var_os(VAR).is_some() {
            eprintln!("skipped: RUST_MIN_STACK is set for the test run");
            return;
        }
        set_default();
        assert_eq!(std::env::var(VAR).unwrap(), THREAD_STACK.to_string());
        assert_eq!(child_sees(), "unset");
    }
}
