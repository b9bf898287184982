//! Placing the kernel command line in guest memory at
//! [`CMDLINE_START`], within the kernel's own limit.
//!
//! The line itself is composed by the daemon; here it goes through
//! linux-loader's `Cmdline` (which refuses what a kernel command line cannot
//! hold: anything but printable ASCII) and its `load_cmdline`.

use linux_loader::loader::Cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::LoadError;
use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

/// Writes the NUL-terminated command line at [`CMDLINE_START`]; `max` is the
/// kernel's limit (`cmdline_size`, excluding the NUL).
pub fn load_cmdline(mem: &GuestMemoryMmap, cmdline: &str, max: usize) -> Result<(), LoadError> {
    let max = max.min(CMDLINE_MAX_SIZE as usize - 1);
    if cmdline.len() > max {
        return Err(LoadError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    let bad = |e: linux_loader::cmdline::Error| LoadError::BadCmdline(e.to_string());
    let mut line = Cmdline::new(max + 1).map_err(bad)?;
    line.insert_str(cmdline).map_err(bad)?;
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &line).map_err(|_| {
        LoadError::GuestWrite {
            what: "command line",
            addr: CMDLINE_START,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::MemoryLayout;
    use vm_memory::Bytes;

    #[test]
    fn writes_the_line_and_refuses_long_ones() {
        let mem = MemoryLayout::new(64).unwrap().allocate().unwrap();
        assert!(matches!(
            load_cmdline(&mem, &"x".repeat(100), 50),
            Err(LoadError::CmdlineTooLong { len: 100, max: 50 })
        ));
        let line = "console=ttyS0 root=/dev/cobd0 -- single";
        load_cmdline(&mem, line, 2047).unwrap();
        let mut back = vec![0u8; line.len() + 1];
        mem.read_slice(&mut back, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&back[..line.len()], line.as_bytes(), "same bytes as given");
        assert_eq!(back[line.len()], 0);
        assert!(matches!(
            load_cmdline(&mem, "console=ttyS0\u{7}", 2047),
            Err(LoadError::BadCmdline(_))
        ));
    }
}
