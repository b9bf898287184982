//! An untrusted guest: random accesses to the PCI configuration ports, the
//! devices' configuration space and every byte of their BARs, then a normal
//! driver bring-up. Nothing the guest does may panic or hang the daemon's
//! devices, and a reset must give back a working disk and NIC.

mod common;

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::guest::{GuestCpu, GuestEnd, GuestResult};
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::guest_virtio::net::NetDriver;
use colinux_sim::guest_virtio::pci::{self, PciFunction};
use colinux_sim::loopback::Loopback;
use colinux_sim::trace::Event;
use colinux_sim::vm::GuestOutcome;
use common::*;
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
enum Access {
    /// Configuration space of slot `slot` at `offset`.
    Config {
        slot: u8,
        offset: u8,
        size: u8,
        value: u32,
        write: bool,
    },
    /// BAR 0 of device `dev` (0 = blk, 1 = net) at `offset`.
    Bar {
        dev: usize,
        offset: u64,
        size: u8,
        value: u64,
        write: bool,
    },
    /// The raw configuration ports.
    Port {
        port: u16,
        size: u8,
        value: u32,
        write: bool,
    },
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(2), Just(4)]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        1 => (0..4u8, any::<u8>(), size(), any::<u32>(), any::<bool>()).prop_map(
            |(slot, offset, size, value, write)| Access::Config { slot, offset, size, value, write }
        ),
        4 => (0..2usize, 0..0x8000u64, prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], any::<u64>(), any::<bool>())
            .prop_map(|(dev, offset, size, value, write)| Access::Bar { dev, offset, size, value, write }),
        1 => (0xcf8..0xd00u16, size(), any::<u32>(), any::<bool>())
            .prop_map(|(port, size, value, write)| Access::Port { port, size, value, write }),
    ]
}

fn fuzz(cpu: &mut GuestCpu, bars: [u64; 2], ops: &[Access]) -> GuestResult<()> {
    for a in ops {
        match *a {
            Access::Config {
                slot,
                offset,
                size,
                value,
                write,
            } => {
                if write {
                    pci::write(cpu, slot, offset, size, value)?;
                } else {
                    pci::read(cpu, slot, offset, size)?;
                }
            }
            Access::Bar {
                dev,
                offset,
                size,
                value,
                write,
            } => {
                let addr = bars[dev] + offset;
                if write {
                    cpu.mmio_write(addr, size, value)?;
                } else {
                    cpu.mmio_read(addr, size)?;
                }
            }
            Access::Port {
                port,
                size,
                value,
                write,
            } => {
                if write {
                    cpu.port_out(port, size, value)?;
                } else {
                    cpu.port_in(port, size)?;
                }
            }
        }
    }
    Ok(())
}

/// Puts BAR 0 back where firmware placed it and re-reads the function.
fn restore(cpu: &mut GuestCpu, f: &PciFunction) -> GuestResult<PciFunction> {
    let addr = f.bars[0].map(|b| b.addr).unwrap_or(0);
    let mut g = f.clone();
    pci::move_bar(cpu, &mut g, 0, addr)?;
    Ok(g)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn random_guest_accesses_never_break_the_devices(ops in prop::collection::vec(access(), 1..120)) {
        let disk = temp_disk(16);
        let m = machine();
        m.add_block(open_image(&disk, false), "cobd0", None).unwrap();
        let (backend, net) = Loopback::new(true).unwrap();
        m.add_net(Box::new(backend), [2, 0, 0, 0, 0, 3]).unwrap();
        m.service_backends_when_idle();
        let mut heap = m.guest_heap();
        let want = disk.contents[512 * 4..512 * 5].to_vec();
        let v = m.boot_vcpu(0, Box::new(move |cpu| {
            let fb = find(cpu, 0x1042)?;
            let fnet = find(cpu, 0x1041)?;
            let bars = [fb.bars[0].map(|b| b.addr).unwrap_or(0), fnet.bars[0].map(|b| b.addr).unwrap_or(0)];
            // Enable decoding so BAR accesses reach the devices.
            for f in [&fb, &fnet] {
                pci::write(cpu, f.slot, 4, 2, 6)?;
            }
            cpu.note("fuzz: start");
            fuzz(cpu, bars, &ops)?;
            cpu.note("fuzz: end; reset and bring the devices up again");
            let fb = restore(cpu, &fb)?;
            let fnet = restore(cpu, &fnet)?;
            let mut d = BlkDriver::init(cpu, &fb, &mut heap, 8, false)?;
            let r = d.submit(cpu, &[BlkOp::Read { sector: 4, sectors: 1 }])?;
            ensure(r[0].status == 0 && r[0].data == want, "disk unusable after the fuzz")?;
            let mut n = NetDriver::init(cpu, &fnet, &mut heap, 8, false)?;
            let frame: Vec<u8> = (0..60u8).collect();
            n.send(cpu, std::slice::from_ref(&frame))?;
            // The echo, possibly behind frames the fuzzing guest queued itself.
            for _ in 0..64 {
                if n.recv(cpu, 1)?.contains(&frame) {
                    return Ok(GuestEnd::Poweroff);
                }
            }
            ensure(false, "NIC unusable after the fuzz")?;
            Ok(GuestEnd::Poweroff)
        })).unwrap();
        let ev = run_daemon_loop(&m, v);
        prop_assert_eq!(m.vm.outcome(0), Some(GuestOutcome::Ended(GuestEnd::Poweroff)));
        prop_assert_eq!(ev, MachineEvent::Poweroff);
        prop_assert!(net.sent().contains(&(0..60u8).collect::<Vec<u8>>()));
        let refused = m.vm.trace().events().iter().any(|e| matches!(e, Event::EntryRefused { .. }));
        prop_assert!(!refused);
    }
}
