//! A stalled terminal must not stall the guest (issue 11): the serial port's
//! output reaches stdout through the console writer, and when stdout stops
//! draining, the UART's transmit path (the vCPU thread) still returns at once.
//!
//! The test points fd 1 at a pipe nobody reads, so it is alone in its binary.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use colinux_daemon::vmm::console::{self, ConsoleOut};
use colinux_devices::bus::BusDevice;
use colinux_devices::interrupt::InterruptSink;
use colinux_devices::legacy::serial::SerialPort;

struct NoIrq;
impl InterruptSink for NoIrq {
    fn send_msi(&self, _: u64, _: u32) -> std::io::Result<()> {
        Ok(())
    }
    fn set_irq_line(&self, _: u32, _: bool) -> std::io::Result<()> {
        Ok(())
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe() just returned these two descriptors, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
fn stalled_stdout_does_not_block_the_serial_port() {
    let (read_end, write_end) = pipe();
    // SAFETY: dup/dup2 on descriptors this process owns.
    let saved = unsafe { OwnedFd::from_raw_fd(libc::dup(1)) };
    // SAFETY: as above; fd 1 now names the pipe nobody reads.
    assert_eq!(unsafe { libc::dup2(write_end.as_raw_fd(), 1) }, 1);

    let out = ConsoleOut::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = console::ticker(out.clone(), stop.clone());
    let mut port = SerialPort::new(Arc::new(NoIrq), 4, out);
    let (done_tx, done_rx) = mpsc::channel();
    let guest = std::thread::spawn(move || {
        // 1 MiB of console lines: far more than the pipe holds (64 KiB).
        let line = [b'x'; 63];
        for _ in 0..(1 << 20) / 64 {
            for &b in line.iter().chain(b"\n") {
                port.write(0, &[b]);
            }
        }
        let _ = done_tx.send(());
    });
    let finished = done_rx.recv_timeout(Duration::from_secs(20)).is_ok();

    // Unblock everything before asserting, so the harness can print.
    let drain = std::thread::spawn(move || {
        let mut f = std::fs::File::from(read_end);
        let _ = std::io::copy(&mut f, &mut std::io::sink());
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: restores the saved stdout onto fd 1.
    unsafe { libc::dup2(saved.as_raw_fd(), 1) };
    drop(write_end);
    let _ = guest.join();
    let _ = writer.join();
    let _ = drain.join();
    assert!(
        finished,
        "the serial port's write path blocked behind a stalled stdout"
    );
}
