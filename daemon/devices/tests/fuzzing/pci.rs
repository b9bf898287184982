//! `pci_config`: arbitrary sequences of configuration-space reads and writes
//! (any slot, offset and width, the raw 0xCF8..0xCFF ports, BAR sizing, the
//! MSI-X capability, the virtio PCI-cfg access window) and BAR 0 accesses
//! (common configuration, ISR, device configuration, doorbells, MSI-X table
//! and PBA), against the real PCI root with the host bridge, a virtio-blk and
//! a virtio-net device attached.
//!
//! Invariants: no panic; identity registers, header type and capability
//! lists never change; a dword read equals its four byte reads; BAR sizing
//! reports each BAR's real size and type; the legacy interrupt line only
//! ever changes level; after the BARs are put back, a fresh probe and
//! initialisation give a working disk and NIC.

use colinux_devices::virtio::blk::{self, BlockDevice};
use colinux_devices::virtio::net::{self, NetDevice, HDR_LEN};
use colinux_devices::virtio::pci::{VirtioPciDevice, BAR_SIZE};
use std::collections::HashMap;
use vm_memory::{Bytes, GuestAddress};

use super::input::Input;
use super::memdisk::MemDisk;
use super::{machine, SCRATCH};
use crate::common::loopback::{LoopState, Loopback};
use crate::common::{Irq, Machine, VirtioDriver, WINDOW};

/// Most guest actions one input performs.
const MAX_OPS: usize = 256;

/// What must never change in a function's configuration space.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    id: u32,
    class_rev: u32,
    header: u8,
    caps: Vec<(u8, u8)>,
}

fn identity(m: &mut Machine, slot: u8) -> Identity {
    let mut caps = Vec::new();
    if m.cfg_read(slot, 0x06, 2) & (1 << 4) != 0 {
        let mut p = m.cfg_read(slot, 0x34, 1) as u8;
        while p != 0 && caps.len() < 48 {
            caps.push((m.cfg_read(slot, p, 1) as u8, p));
            p = m.cfg_read(slot, p + 1, 1) as u8;
        }
    }
    Identity {
        id: m.cfg_read(slot, 0, 4),
        class_rev: m.cfg_read(slot, 8, 4),
        header: m.cfg_read(slot, 0x0e, 1) as u8,
        caps,
    }
}

fn bar0(m: &mut Machine, slot: u8) -> u64 {
    let lo = m.cfg_read(slot, 0x10, 4);
    u64::from(m.cfg_read(slot, 0x14, 4)) << 32 | u64::from(lo & !0xf)
}

/// An offset in BAR 0, mostly inside one of its structures.
fn bar_offset(inp: &mut Input) -> u64 {
    let o = u64::from(inp.u16());
    match inp.u8() & 7 {
        0 => o % 64,
        1 => 0x1000 + o % 8,
        2 => 0x2000 + o % 64,
        3 => 0x3000 + o % 16,
        4 => 0x4000 + o % 0x40,
        5 => 0x6000 + o % 16,
        6 => o % BAR_SIZE,
        _ => o,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut m = machine();
    let (disk, _contents) = MemDisk::new(8, false, true);
    let blk_slot = m.add(Box::new(VirtioPciDevice::new(
        BlockDevice::new(disk, "cobd0"),
        m.mem.clone(),
        m.sink.clone(),
        Some(10),
    )));
    let (backend, state) = Loopback::new();
    let net_slot = m.add(Box::new(VirtioPciDevice::new(
        NetDevice::new(Box::new(backend), [2, 0, 0, 0, 0, 1]),
        m.mem.clone(),
        m.sink.clone(),
        Some(11),
    )));
    let slots = [0u8, blk_slot, net_slot];
    let ids: Vec<Identity> = slots.iter().map(|&s| identity(&mut m, s)).collect();
    let firmware_bars: Vec<u64> = [blk_slot, net_slot]
        .iter()
        .map(|&s| bar0(&mut m, s))
        .collect();
    let probed = [
        VirtioDriver::probe(&mut m, blk_slot),
        VirtioDriver::probe(&mut m, net_slot),
    ];
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let pick = inp.u8();
        let slot = match pick % 5 {
            0 => 0,
            1 | 3 => blk_slot,
            2 | 4 => net_slot,
            _ => unreachable!(),
        };
        let dev = usize::from(pick % 2);
        match inp.u8() % 9 {
            0 => {
                let (off, w, v) = (inp.u8(), inp.width(false), inp.u32());
                let slot = if pick & 0x80 != 0 {
                    inp.u8() & 31
                } else {
                    slot
                };
                m.cfg_write(slot, off & !(w as u8 - 1), w, v);
            }
            1 => {
                // A dword read equals its bytes (outside the PCI-cfg window,
                // whose reads reach BAR 0 and may clear the ISR).
                let off = inp.u8() & !3;
                let window = probed[dev].layout.pci_cfg_cap + 16;
                let dword = m.cfg_read(slot, off, 4);
                if slot == 0 || off != window {
                    let bytes: Vec<u8> =
                        (0..4).map(|i| m.cfg_read(slot, off + i, 1) as u8).collect();
                    let words = [m.cfg_read(slot, off, 2), m.cfg_read(slot, off + 2, 2)];
                    assert_eq!(
                        dword.to_le_bytes().to_vec(),
                        bytes,
                        "slot {slot} dword {off:#x}"
                    );
                    assert_eq!(
                        dword,
                        words[0] | words[1] << 16,
                        "slot {slot} words {off:#x}"
                    );
                }
            }
            2 => {
                // The raw ports, any width at any of the eight.
                let port = u64::from(inp.u8() & 7);
                let w = inp.width(false);
                let v = inp.u32();
                use colinux_devices::bus::BusDevice;
                if inp.u8() & 1 == 0 {
                    m.cfg.write(port, &v.to_le_bytes()[..w]);
                } else {
                    let mut b = [0u8; 4];
                    m.cfg.read(port, &mut b[..w]);
                }
            }
            3 | 4 => {
                let base = bar0(&mut m, [blk_slot, net_slot][dev]);
                let off = bar_offset(&mut inp);
                let w = inp.width(true);
                let v = inp.u64();
                if inp.u8() & 1 == 0 {
                    m.mmio_write(base.wrapping_add(off), w, v);
                } else {
                    m.mmio_read(base.wrapping_add(off), w);
                }
            }
            5 => {
                // Anywhere in the MMIO window (or just outside it).
                let off = u64::from(inp.u32()) % (WINDOW.size + 0x1000);
                let w = inp.width(true);
                let v = inp.u64();
                if inp.u8() & 1 == 0 {
                    m.mmio_write(WINDOW.base + off, w, v);
                } else {
                    m.mmio_read(WINDOW.base + off, w);
                }
            }
            6 => {
                // BAR sizing, as firmware and Linux do it.
                let bar = inp.u8() % 7;
                let reg = 0x10 + 4 * bar;
                let orig = m.cfg_read(slot, reg, 4);
                m.cfg_write(slot, reg, 4, u32::MAX);
                let mask = m.cfg_read(slot, reg, 4);
                m.cfg_write(slot, reg, 4, orig);
                let want = match (slot == 0, bar) {
                    (true, _) | (false, 2..=5) => 0,
                    (false, 0) => !(BAR_SIZE as u32 - 1) | 0b100,
                    (false, 1) => u32::MAX,
                    (false, _) => mask, // 0x28: the CardBus CIS pointer, not a BAR
                };
                assert_eq!(mask, want, "slot {slot} BAR {bar} sizing");
                assert_eq!(
                    m.cfg_read(slot, reg, 4),
                    orig,
                    "slot {slot} BAR {bar} restored"
                );
            }
            7 => {
                // MSI-X control: enable and function-mask bits.
                let cap = probed[dev].layout.msix_cap;
                let ctrl = (u32::from(inp.u8() & 0xc0)) << 8 | u32::from(inp.u8());
                m.cfg_write([blk_slot, net_slot][dev], cap + 2, 2, ctrl);
            }
            _ => {
                // The PCI-cfg access window: target, then data.
                let cap = probed[dev].layout.pci_cfg_cap;
                let s = [blk_slot, net_slot][dev];
                let bar = if inp.u8() & 0xf0 == 0 { inp.u8() } else { 0 };
                let off = bar_offset(&mut inp) as u32;
                let len = [1u32, 2, 4, 0, 3, 8, 4, 4][usize::from(inp.u8() & 7)];
                m.cfg_write(s, cap + 4, 1, u32::from(bar));
                m.cfg_write(s, cap + 8, 4, off);
                m.cfg_write(s, cap + 12, 4, len);
                let w = inp.width(false);
                if inp.u8() & 1 == 0 {
                    let v = inp.u32();
                    m.cfg_write(s, cap + 16, w, v);
                } else {
                    m.cfg_read(s, cap + 16, w);
                }
            }
        }
    }
    for (&s, want) in slots.iter().zip(&ids) {
        assert_eq!(&identity(&mut m, s), want, "slot {s} identity changed");
    }
    check_lines(&m.sink.take());
    // Firmware's BAR placement back, decoding on, then a normal driver.
    for (&s, &addr) in [blk_slot, net_slot].iter().zip(&firmware_bars) {
        m.cfg_write(s, 0x10, 4, addr as u32 | 0b100);
        m.cfg_write(s, 0x14, 4, (addr >> 32) as u32);
    }
    let [d, n] = probed;
    still_works(&mut m, d, n, &state);
}

/// INTx: each line only ever toggles (no repeated level).
fn check_lines(irqs: &[Irq]) {
    let mut level: HashMap<u32, bool> = HashMap::new();
    for i in irqs {
        if let Irq::Line { irq, level: l } = *i {
            let prev = level.insert(irq, l).unwrap_or(false);
            assert_ne!(prev, l, "line {irq} set to {l} twice in a row");
        }
    }
}

/// The functions found by the first probe (the identity check showed
/// nothing moved) work for a well-behaved driver.
fn still_works(
    m: &mut Machine,
    mut d: VirtioDriver,
    mut n: VirtioDriver,
    state: &std::sync::Arc<std::sync::Mutex<LoopState>>,
) {
    d.init(m, !0, true, 8);
    let (hdr, data, status) = (SCRATCH, SCRATCH + 0x1000, SCRATCH + 0x3000);
    m.mem.write_slice(&[0u8; 16], GuestAddress(hdr)).unwrap();
    m.mem.write_obj(0xeeu8, GuestAddress(status)).unwrap();
    d.queues[0].add_chain(
        &m.mem,
        &[(hdr, 16, false), (data, 512, true), (status, 1, true)],
    );
    d.kick(m, 0);
    assert_eq!(
        d.queues[0].pop_used(&m.mem).map(|u| u.1),
        Some(513),
        "disk answers after the fuzz"
    );
    assert_eq!(
        m.mem.read_obj::<u8>(GuestAddress(status)).unwrap(),
        blk::S_OK
    );
    n.init(m, !0, true, 8);
    state.lock().unwrap().from_guest.clear();
    let frame: Vec<u8> = (0..60u8).collect();
    m.mem
        .write_slice(&[0u8; HDR_LEN], GuestAddress(SCRATCH))
        .unwrap();
    m.mem
        .write_slice(&frame, GuestAddress(SCRATCH + HDR_LEN as u64))
        .unwrap();
    n.queues[net::TX_QUEUE].add_chain(&m.mem, &[(SCRATCH, (HDR_LEN + frame.len()) as u32, false)]);
    n.kick(m, net::TX_QUEUE as u16);
    assert_eq!(
        state.lock().unwrap().from_guest,
        vec![frame],
        "NIC sends after the fuzz"
    );
}
