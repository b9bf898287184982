# net-dual: the classic two-NIC set-up. eth0 = tuntap to the host VM (static
# 192.0.2.2/24, host 192.0.2.1), eth1 = slirp outward (DHCP 10.0.2.15, default
# route via 10.0.2.2). Each path carries a checksummed HTTP fetch: over the TAP
# from 192.0.2.1:8080, over slirp from 10.0.2.2:8081 (the host VM's loopback,
# reachable only through slirp); routes pick the right NIC.
# Kernel-line inputs: colinux.sha=SHA-256 of /work/payload.bin
. /etc/colinux/checks/net-lib.sh
need_nic nic-tap 00:ff:c0:11:00:04 && TAP=$NIC
need_nic nic-slirp 00:ff:c0:11:00:05 && SLIRP=$NIC
if [ -n "$TAP" ] && [ -n "$SLIRP" ]; then
    ip addr add 192.0.2.2/24 dev "$TAP"
    dhcp "$SLIRP"
    check_eq slirp-address 10.0.2.15 "$LEASE_IP"
    check_eq route-tap "$TAP" "$(ip route get 192.0.2.1 | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1)"
    check_eq route-default "$SLIRP" "$(ip route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -1)"
    ping_check ping-tap 192.0.2.1
    fetch_check tap-fetch http://192.0.2.1:8080/payload.bin "$(arg colinux.sha)"
    fetch_check slirp-fetch http://10.0.2.2:8081/payload.bin "$(arg colinux.sha)"
fi
