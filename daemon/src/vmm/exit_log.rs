//! The last few exits of a vCPU, kept for the fault report.
//!
//! When a guest triple-faults on AMD SVM the hypervisor hands back the reset
//! state, not the faulting one, so the registers say nothing about how far the
//! guest got. The exits that came before it do: the last port and MMIO
//! accesses, how many exits there were, how long the vCPU had run.

use std::fmt::Write as _;
use std::time::Instant;

/// How many exits are kept.
pub const KEPT: usize = 16;

/// One remembered exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitRecord {
    /// Port read.
    IoIn { port: u16, len: u8 },
    /// Port write (first up to 4 bytes of the value, little-endian).
    IoOut { port: u16, len: u8, value: u32 },
    /// MMIO read.
    MmioRead { addr: u64, len: u8 },
    /// MMIO write (first up to 4 bytes of the value, little-endian).
    MmioWrite { addr: u64, len: u8, value: u32 },
    /// HLT, or `KVM_RUN` interrupted by a signal.
    Other(&'static str),
}

/// First up to 4 bytes of `data`, little-endian.
fn low_bytes(data: &[u8]) -> u32 {
    data.iter()
        .take(4)
        .enumerate()
        .fold(0, |v, (i, b)| v | (u32::from(*b) << (8 * i)))
}

impl ExitRecord {
    /// A port write of `data`.
    pub fn io_out(port: u16, data: &[u8]) -> Self {
        ExitRecord::IoOut {
            port,
            len: data.len() as u8,
            value: low_bytes(data),
        }
    }

    /// An MMIO write of `data`.
    pub fn mmio_write(addr: u64, data: &[u8]) -> Self {
        ExitRecord::MmioWrite {
            addr,
            len: data.len() as u8,
            value: low_bytes(data),
        }
    }
}

/// A ring of the last [`KEPT`] exits, with the total count.
#[derive(Debug)]
pub struct ExitLog {
    ring: [Option<(u32, ExitRecord)>; KEPT],
    count: u64,
    started: Instant,
}

impl Default for ExitLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitLog {
    /// An empty log; the run clock starts now.
    pub fn new() -> Self {
        Self {
            ring: [None; KEPT],
            count: 0,
            started: Instant::now(),
        }
    }

    /// Remember one exit.
    pub fn push(&mut self, rec: ExitRecord) {
        let ms = self.started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        self.ring[(self.count % KEPT as u64) as usize] = Some((ms, rec));
        self.count += 1;
    }

    /// Total exits seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The kept exits, oldest first.
    pub fn recent(&self) -> Vec<(u32, ExitRecord)> {
        let n = self.count.min(KEPT as u64);
        (self.count - n..self.count)
            .filter_map(|i| self.ring[(i % KEPT as u64) as usize])
            .collect()
    }

    /// A few report lines: the count, the run time, the last exits.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "  {} exits to the daemon in {} ms of run time; the last {}:\n",
            self.count,
            self.started.elapsed().as_millis(),
            self.count.min(KEPT as u64)
        );
        for (ms, r) in self.recent() {
            let what = match r {
                ExitRecord::IoIn { port, len } => format!("in  port {port:#06x} ({len} bytes)"),
                ExitRecord::IoOut { port, len, value } => {
                    format!("out port {port:#06x} ({len} bytes) = {value:#x}")
                }
                ExitRecord::MmioRead { addr, len } => format!("mmio read  {addr:#x} ({len} bytes)"),
                ExitRecord::MmioWrite { addr, len, value } => {
                    format!("mmio write {addr:#x} ({len} bytes) = {value:#x}")
                }
                ExitRecord::Other(what) => what.to_string(),
            };
            let _ = writeln!(s, "    +{ms:>6} ms  {what}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_exits_oldest_first() {
        let mut log = ExitLog::new();
        for p in 0..(KEPT as u16 + 5) {
            log.push(ExitRecord::IoIn { port: p, len: 1 });
        }
        let r = log.recent();
        assert_eq!(log.count(), KEPT as u64 + 5);
        assert_eq!(r.len(), KEPT);
        assert_eq!(r[0].1, ExitRecord::IoIn { port: 5, len: 1 });
        assert_eq!(
            r[KEPT - 1].1,
            ExitRecord::IoIn {
                port: KEPT as u16 + 4,
                len: 1
            }
        );
    }

    #[test]
    fn describes_values_and_counts() {
        let mut log = ExitLog::new();
        log.push(ExitRecord::io_out(0x3f8, b"A"));
        log.push(ExitRecord::mmio_write(
            0xfebf_0000,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        ));
        log.push(ExitRecord::Other("hlt"));
        let d = log.describe();
        assert!(d.contains("3 exits"), "{d}");
        assert!(d.contains("out port 0x03f8 (1 bytes) = 0x41"), "{d}");
        assert!(
            d.contains("mmio write 0xfebf0000 (8 bytes) = 0x4030201"),
            "{d}"
        );
        assert!(d.contains("hlt"), "{d}");
    }

    #[test]
    fn an_empty_log_says_so() {
        let log = ExitLog::new();
        assert!(log.recent().is_empty());
        assert!(log.describe().contains("0 exits"));
    }
}
