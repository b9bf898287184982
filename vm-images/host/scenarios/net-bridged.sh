#!/bin/sh
# net-bridged host side. setup: a veth pair lanbr <-> lanpeer; lanpeer goes into
# the network namespace "lan" (198.51.100.1/24) running busybox udhcpd (pool
# .100-.150) and httpd (:8080 serving /work). The guest NIC is bridged onto
# lanbr (inner QEMU: bridge br-lanbr + TAP from prepare.sh; colinux-daemon:
# pcap-bridge = AF_PACKET on lanbr). check: the LAN's lease file names the
# guest's MAC.
. /etc/colinux/host-lib.sh
D=/run/colinux-lan
GUEST_MAC=00:ff:c0:11:00:03
inlan() { nsenter --net=/run/netns/lan "$@"; }

case "$1" in
setup)
    mkdir -p "$D"
    : > "$D/leases"
    cat > "$D/udhcpd.conf" <<EOF
start 198.51.100.100
end 198.51.100.150
interface lanpeer
lease_file $D/leases
pidfile $D/udhcpd.pid
option subnet 255.255.255.0
option router 198.51.100.1
option lease 600
EOF
    ok=yes
    ip netns add lan || ok=no
    ip link add lanbr type veth peer name lanpeer || ok=no
    ip link set lanpeer netns lan || ok=no
    ip -n lan link set lo up
    ip -n lan addr add 198.51.100.1/24 dev lanpeer || ok=no
    ip -n lan link set lanpeer up || ok=no
    ip link set lanbr up || ok=no
    if [ "$MONITOR" = qemu ]; then
        # The inner QEMU's side of the bridge, as prepare.sh's colinux_bridge_tap
        # names it (bridge br-lanbr, TAP cbr0); made here with iproute2 so that
        # prepare.sh finds them in place.
        ip link add br-lanbr type bridge || ok=no
        ip link set lanbr master br-lanbr || ok=no
        ip link set br-lanbr up || ok=no
        ip tuntap add dev cbr0 mode tap || ok=no
        ip link set cbr0 master br-lanbr || ok=no
        ip link set cbr0 up || ok=no
    fi
    inlan udhcpd "$D/udhcpd.conf" || ok=no
    inlan httpd -p 198.51.100.1:8080 -h /work || ok=no
    if [ "$ok" = yes ]; then
        check host-lan PASS "netns lan: lanpeer 198.51.100.1/24, udhcpd, httpd; lanbr up"
    else
        check host-lan FAIL "LAN namespace set-up failed"
    fi
    ;;
during) ;;
check)
    [ -f "$D/udhcpd.pid" ] && kill -USR1 "$(cat "$D/udhcpd.pid")" 2>/dev/null
    sleep 1
    leases=$(dumpleases -f "$D/leases" 2>/dev/null)
    if echo "$leases" | grep -qi "$GUEST_MAC"; then
        check lease-recorded PASS "$(echo "$leases" | grep -i "$GUEST_MAC" | tr -s ' ')"
    else
        check lease-recorded FAIL "no lease for $GUEST_MAC: $(echo "$leases" | tr '\n' ' ')"
    fi
    ;;
esac
exit 0
