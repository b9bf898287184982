//! A guest cannot flood the host's log (issue 11): register writes and
//! doorbells it may repeat at will produce a bounded number of log lines,
//! counting the lines of the `virtio-queue` crate (through `log`) too.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use colinux_devices::block::DiskImage;
use colinux_devices::virtio::blk::BlockDevice;
use colinux_devices::virtio::pci::VirtioPciDevice;
use common::*;
use vm_memory::{Bytes, GuestAddress};

/// Counts the lines the subscriber writes, and keeps the last few.
#[derive(Clone, Default)]
struct Lines {
    count: Arc<AtomicUsize>,
    text: Arc<Mutex<Vec<u8>>>,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.iter().filter(|&&b| b == b'\n').count();
        self.count.fetch_add(n, Ordering::Relaxed);
        let mut t = self.text.lock().unwrap();
        if t.len() < 64 * 1024 {
            t.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ROUNDS: usize = 2000;

#[test]
fn guest_floods_give_a_bounded_number_of_log_lines() {
    let lines = Lines::default();
    let w = lines.clone();
    // Every level, and `log` records (virtio-queue's) converted to events.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .init();

    let dir = TempDir::new();
    let path = dir.file("f.img", &vec![0u8; 64 * 512]);
    let mut m = Machine::new();
    let dev = VirtioPciDevice::new(
        BlockDevice::new(DiskImage::open(&path, false).unwrap(), "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        None,
    );
    let slot = m.add(Box::new(dev));
    let mut d = VirtioDriver::probe(&mut m, slot);
    d.init(&mut m, !0, true, 16);
    let baseline = lines.count.load(Ordering::Relaxed);

    // 1. A bogus avail index, and a doorbell, again and again.
    let avail = d.queues[0].avail;
    m.mem.write_obj(1000u16, GuestAddress(avail + 2)).unwrap();
    for _ in 0..ROUNDS {
        d.kick(&mut m, 0);
    }
    // 2. An avail entry naming a descriptor past the ring.
    d.init(&mut m, !0, true, 16);
    for _ in 0..ROUNDS {
        d.queues[0].publish(&m.mem, 999);
        d.kick(&mut m, 0);
    }
    // 3. Invalid queue sizes and misaligned ring addresses while resetting.
    d.set_status(&mut m, 0);
    d.common_write(&mut m, 22, 2, 0);
    for _ in 0..ROUNDS {
        d.common_write(&mut m, 24, 2, 3);
        d.common_write(&mut m, 32, 4, 0x1001);
        d.common_write(&mut m, 40, 4, 0x1001);
        d.common_write(&mut m, 48, 4, 0x1001);
    }
    // 4. Writes to read-only parts of BAR 0.
    for _ in 0..ROUNDS {
        m.mmio_write(d.layout.isr, 1, 1);
    }

    let logged = lines.count.load(Ordering::Relaxed) - baseline;
    let text = String::from_utf8_lossy(&lines.text.lock().unwrap()).into_owned();
    println!("{logged} lines logged:\n{text}");
    assert!(logged > 0, "the floods were not logged at all");
    assert!(
        logged <= 60,
        "{logged} log lines for {ROUNDS} rounds of each flood; first lines:\n{}",
        text.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}
