//! The daemon's whole machine assembly (`Machine::build_on`) on the `sim`
//! hypervisor: the daemon loads a (synthetic) bzImage, builds the boot state,
//! wires cobd0 from a colinux.conf as virtio-blk, starts its vCPU threads —
//! and the scripted guest, entered in the driver's boot state (checked by the
//! world-switch model), finds the disk, reads and writes it, and powers the
//! machine off through the ACPI port.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use colinux_daemon::vmm::console::ConsoleOut;
use colinux_daemon::vmm::devices::spawn_backend_poller;
use colinux_daemon::vmm::machine::{self, Machine, MachineSpec};
use colinux_daemon::vmm::vcpu::{self, MachineEvent};
use colinux_driver::arch::x86_64::acpi::{S5_SLEEP_TYPE, SLEEP_CONTROL_PORT};
use colinux_driver::arch::x86_64::layout::{KERNEL_START, ZERO_PAGE_START};
use colinux_driver::hypervisor::StandardRegisters;
use colinux_sim::guest::GuestEnd;
use colinux_sim::guest_virtio::blk::{BlkDriver, BlkOp};
use colinux_sim::guest_virtio::net::NetDriver;
use colinux_sim::guest_virtio::GuestAlloc;
use colinux_sim::machine::GUEST_HEAP_START;
use colinux_sim::trace::{Event, Interrupt};
use colinux_sim::vm::{GuestOutcome, SimConfig, SimHypervisor, SimVm};
use common::*;
use vm_memory::{Bytes, GuestAddress};

/// Builds the daemon's machine on `hv`, runs its vCPUs until it reports an
/// event (at most `timeout`), stops them and asserts that the guest powered
/// off; the VM, for its trace and outcome.
#[track_caller]
fn run_until_poweroff(hv: &SimHypervisor, spec: &MachineSpec, timeout: Duration) -> SimVm {
    let (tx, rx) = mpsc::channel();
    let mut m = Machine::build_on(hv, spec, tx, ConsoleOut::default()).unwrap();
    vcpu::install_kick_handler().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = m.start(stop.clone(), false).unwrap();
    let ev = rx.recv_timeout(timeout);
    machine::stop_vcpus(&stop, handles);
    let vm = hv.vm(0).unwrap();
    assert_eq!(ev, Ok(MachineEvent::Poweroff), "{:?}", vm.outcome(0));
    vm
}

#[test]
fn daemon_machine_boots_the_scripted_guest() {
    let disk = temp_disk(32);
    let spec = daemon_spec(
        disk.dir.path(),
        &format!("cobd0={} mem=64 root=/dev/cobd0", disk.path.display()),
        "root=/dev/cobd0 console=ttyS0",
        2,
    );
    let hv = SimHypervisor::new(SimConfig::default());
    let entry = Arc::new(Mutex::new(None::<StandardRegisters>));
    let entry2 = entry.clone();
    let want = disk.contents[7 * 512..8 * 512].to_vec();
    hv.set_program(
        0,
        Box::new(move |cpu| {
            *entry2.lock().unwrap() = Some(*cpu.regs());
            // The zero page the daemon wrote: setup header magic and command line.
            let mem = cpu.mem().clone();
            let mut magic = [0u8; 4];
            mem.read_slice(&mut magic, GuestAddress(ZERO_PAGE_START + 0x202))
                .unwrap_or_default();
            ensure(&magic == b"HdrS", "zero page without the setup header")?;
            let cmdline_ptr: u32 = mem
                .read_obj(GuestAddress(ZERO_PAGE_START + 0x228))
                .unwrap_or(0);
            let mut cmd = [0u8; 29];
            mem.read_slice(&mut cmd, GuestAddress(u64::from(cmdline_ptr)))
                .unwrap_or_default();
            ensure(&cmd == b"root=/dev/cobd0 console=ttyS0", "command line")?;
            let mut heap = GuestAlloc::new(GUEST_HEAP_START, 60 << 20);
            let f = find(cpu, 0x1042)?;
            let mut d = BlkDriver::init(cpu, &f, &mut heap, 16, true)?;
            let r = d.submit(
                cpu,
                &[
                    BlkOp::GetId,
                    BlkOp::Read {
                        sector: 7,
                        sectors: 1,
                    },
                    BlkOp::Write {
                        sector: 0,
                        data: vec![0xc0; 512],
                    },
                    BlkOp::Flush,
                ],
            )?;
            ensure(r.iter().all(|x| x.status == 0), "status")?;
            ensure(r[0].data.starts_with(b"cobd0\0"), "serial")?;
            ensure(r[1].data == want, "sector 7")?;
            cpu.note("acpi: poweroff");
            cpu.outb(SLEEP_CONTROL_PORT, (S5_SLEEP_TYPE << 2) | (1 << 5))?;
            Ok(GuestEnd::Idle)
        }),
    );
    let vm = run_until_poweroff(&hv, &spec, Duration::from_secs(20));
    // The daemon stops the vCPUs as soon as the ACPI write lands, possibly
    // before the program gets to return: either way it did not fail.
    let outcome = vm.outcome(0);
    assert!(
        matches!(outcome, None | Some(GuestOutcome::Ended(GuestEnd::Idle))),
        "{outcome:?}"
    );
    assert!(vm.trace().render().contains("acpi: poweroff"));
    assert_eq!(vm.devices_created(), (true, true), "irqchip and PIT");
    // The guest started at the bzImage's 64-bit entry with RSI at the zero page.
    let r = entry.lock().unwrap().unwrap();
    assert_eq!(r.rip, KERNEL_START + 0x200);
    assert_eq!(r.rsi, ZERO_PAGE_START);
    // The driver's boot state passed every entry rule of the world-switch model.
    let events = vm.trace().events();
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::EntryRefused { .. })));
    let first = events
        .iter()
        .find(|e| matches!(e, Event::Entry { vcpu: 0, .. }));
    assert!(
        matches!(first, Some(Event::Entry { monitor_set: true, rip, .. }) if *rip == KERNEL_START + 0x200),
        "{first:?}"
    );
    // The write reached the image.
    let img = std::fs::read(&disk.path).unwrap();
    assert_eq!(&img[..512], &[0xc0; 512][..]);
}

fn arp_request(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[10, 0, 2, 15]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 2, 2]);
    f
}

/// `eth0=slirp` through the daemon's own wiring and backend poller thread:
/// the guest asks slirp's gateway for its MAC address and gets the answer.
#[test]
fn daemon_machine_slirp_answers_arp() {
    let dir = tempfile::tempdir().unwrap();
    let spec = daemon_spec(dir.path(), "eth0=slirp mem=64", "console=ttyS0", 1);
    let hv = SimHypervisor::new(SimConfig::default());
    let reply = Arc::new(Mutex::new(None::<Vec<u8>>));
    let reply2 = reply.clone();
    hv.set_program(
        0,
        Box::new(move |cpu| {
            let mut heap = GuestAlloc::new(GUEST_HEAP_START, 60 << 20);
            let f = find(cpu, 0x1041)?;
            let mut d = NetDriver::init(cpu, &f, &mut heap, 16, true)?;
            d.send(cpu, &[arp_request(d.mac)])?;
            for _ in 0..8 {
                for fr in d.recv(cpu, 1)? {
                    if fr.len() >= 42 && fr[12..14] == [8, 6] && fr[20..22] == [0, 2] {
                        *reply2.lock().unwrap() = Some(fr);
                        cpu.outb(SLEEP_CONTROL_PORT, (S5_SLEEP_TYPE << 2) | (1 << 5))?;
                        return Ok(GuestEnd::Idle);
                    }
                }
            }
            Err(colinux_sim::guest::GuestError::Device(
                "no ARP reply from slirp".into(),
            ))
        }),
    );
    let (tx, rx) = mpsc::channel();
    let mut m = Machine::build_on(&hv, &spec, tx, ConsoleOut::default()).unwrap();
    vcpu::install_kick_handler().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = spawn_backend_poller(m.pci.clone(), stop.clone());
    let handles = m.start(stop.clone(), false).unwrap();
    let ev = rx.recv_timeout(Duration::from_secs(20));
    machine::stop_vcpus(&stop, handles);
    poller.join().unwrap();
    let vm = hv.vm(0).unwrap();
    assert_eq!(ev, Ok(MachineEvent::Poweroff), "{:?}", vm.outcome(0));
    let r = reply.lock().unwrap().clone().expect("ARP reply");
    assert_eq!(&r[28..32], &[10, 0, 2, 2], "sender is the slirp gateway");
    assert_eq!(&r[38..42], &[10, 0, 2, 15], "target is the guest");
}

/// A guest that never enables MSI-X (a kernel with `pci=nomsi`) still gets
/// its completions: the daemon wires each virtio device's INTA# to the GSI the
/// ACPI `_PRT` names, writes it in Interrupt Line, raises it with the ISR bit
/// and lowers it when the guest's handler reads the ISR.
#[test]
fn daemon_machine_routes_intx_without_msix() {
    use colinux_sim::guest_virtio::pci;
    let disk = temp_disk(32);
    let spec = daemon_spec(
        disk.dir.path(),
        &format!("cobd0={} mem=64 pci=nomsi", disk.path.display()),
        "pci=nomsi console=ttyS0",
        1,
    );
    let hv = SimHypervisor::new(SimConfig::default());
    let seen = Arc::new(Mutex::new(None::<(u8, u32, u64, u64)>));
    let seen2 = seen.clone();
    let want = disk.contents[3 * 512..4 * 512].to_vec();
    hv.set_program(
        0,
        Box::new(move |cpu| {
            let mut heap = GuestAlloc::new(GUEST_HEAP_START, 60 << 20);
            let f = find(cpu, 0x1042)?;
            let line = pci::read(cpu, f.slot, 0x3c, 1)?;
            let mut d = BlkDriver::init_with(cpu, &f, &mut heap, 16, false, false)?;
            d.patience = Duration::from_secs(2);
            for sector in [3, 3, 3] {
                let r = d.submit(cpu, &[BlkOp::Read { sector, sectors: 1 }, BlkOp::Flush])?;
                ensure(r.iter().all(|x| x.status == 0), "status")?;
                ensure(r[0].data == want, "sector 3")?;
            }
            *seen2.lock().unwrap() = Some((
                f.slot,
                line,
                d.counters.interrupts,
                d.counters.lost_interrupts,
            ));
            cpu.outb(SLEEP_CONTROL_PORT, (S5_SLEEP_TYPE << 2) | (1 << 5))?;
            Ok(GuestEnd::Idle)
        }),
    );
    let vm = run_until_poweroff(&hv, &spec, Duration::from_secs(30));
    let (slot, line, interrupts, lost) = seen.lock().unwrap().expect("the guest finished");
    let gsi = colinux_driver::arch::x86_64::pci_irq::gsi(slot, 1);
    assert_eq!(line, gsi, "Interrupt Line holds the routed GSI");
    assert_eq!(lost, 0, "no completion found only by polling");
    assert!(interrupts >= 3, "{interrupts} interrupts");
    let events = vm.trace().events();
    let raised = events
        .iter()
        .filter(|e| matches!(e, Event::Inject(Interrupt::Line { irq }) if *irq == gsi))
        .count();
    let lowered = events
        .iter()
        .filter(|e| matches!(e, Event::LineLow { irq } if *irq == gsi))
        .count();
    assert!(raised >= 3, "line {gsi} raised {raised} times");
    assert_eq!(raised, lowered, "every ISR read lowered the line");
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Inject(Interrupt::Msi { .. }))));
}

/// Past eight devices the PCI INTx lines are shared, and a level line is the OR
/// of its devices: the daemon's sink lowers it only when the last one does.
#[test]
fn shared_pci_intx_line_is_wired_or() {
    use colinux_daemon::vmm::interrupts::VmInterrupts;
    use colinux_devices::interrupt::InterruptSink;
    use colinux_driver::hypervisor::Hypervisor;
    let hv = SimHypervisor::new(SimConfig::default());
    let irq = VmInterrupts::new(hv.create_vm().unwrap());
    let vm = hv.vm(0).unwrap();
    let lines = |vm: &colinux_sim::vm::SimVm| {
        vm.trace()
            .events()
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Inject(Interrupt::Line { .. }) | Event::LineLow { .. }
                )
            })
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    };
    irq.set_irq_line(17, true).unwrap(); // slot 1
    irq.set_irq_line(17, true).unwrap(); // slot 9, same line
    irq.set_irq_line(17, false).unwrap(); // slot 1's ISR read
    assert_eq!(lines(&vm).len(), 1, "still high: {:?}", lines(&vm));
    irq.set_irq_line(17, false).unwrap(); // slot 9's
    assert_eq!(lines(&vm).len(), 2, "low with the last: {:?}", lines(&vm));
    // ISA lines are not counted: the serial port sets its level as it is.
    irq.set_irq_line(4, true).unwrap();
    irq.set_irq_line(4, false).unwrap();
    assert_eq!(lines(&vm).len(), 4);
}
