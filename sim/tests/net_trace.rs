//! Snapshot of the boundary trace for the network path: a frame from the host
//! reaches the guest, a frame from the guest reaches the host and (echoed)
//! comes back while the guest halts, through the daemon's virtio-net.

mod common;

use colinux_daemon::vmm::vcpu::MachineEvent;
use colinux_sim::guest::GuestEnd;
use colinux_sim::guest_virtio::net::NetDriver;
use colinux_sim::loopback::Loopback;
use colinux_sim::vm::GuestOutcome;
use common::*;

const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

fn frame(src: [u8; 6], tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend((0..len - 14).map(|i| tag ^ i as u8));
    f
}

#[test]
fn one_frame_each_way() {
    let m = machine();
    let (backend, net) = Loopback::new(true).unwrap();
    m.add_net(Box::new(backend), MAC).unwrap();
    m.service_backends_when_idle();
    let from_host = frame([0x52, 0x54, 0, 0x12, 0x34, 0x56], 0xa5, 60);
    net.inject(from_host.clone());
    let from_guest = frame(MAC, 0x3c, 42);
    let (fh, fg) = (from_host.clone(), from_guest.clone());
    let mut heap = m.guest_heap();
    let vcpu = m
        .boot_vcpu(
            0,
            Box::new(move |cpu| {
                let f = find(cpu, 0x1041)?;
                let mut d = NetDriver::init(cpu, &f, &mut heap, 8, false)?;
                ensure(d.mac == MAC, format!("mac {:02x?}", d.mac))?;
                ensure(d.link_up(cpu)?, "link down")?;
                cpu.note("net: receive the host's frame");
                let got = d.recv(cpu, 1)?;
                ensure(got == vec![fh.clone()], "host frame differs")?;
                cpu.note("net: send one frame");
                d.send(cpu, std::slice::from_ref(&fg))?;
                cpu.note("net: wait for its echo");
                let echo = d.recv(cpu, 1)?;
                ensure(echo == vec![fg.clone()], "echo differs")?;
                Ok(GuestEnd::Poweroff)
            }),
        )
        .unwrap();
    let ev = run_daemon_loop(&m, vcpu);
    assert_eq!(ev, MachineEvent::Poweroff, "{:?}", m.vm.outcome(0));
    assert_eq!(
        m.vm.outcome(0),
        Some(GuestOutcome::Ended(GuestEnd::Poweroff))
    );
    assert_eq!(net.sent(), vec![from_guest]);
    assert_eq!(net.waiting(), 0);
    insta::assert_snapshot!(m.vm.trace().render());
}
