# Helpers for host scenario scripts and prepare.sh (sourced; SCENARIO is set).
# busybox sh runs its own applets before PATH: use iproute2's ip (tuntap, netns).
[ -x /usr/sbin/ip ] && ip() { /usr/sbin/ip "$@"; }
# check ASSERTION PASS|FAIL DETAIL...: one machine-readable console line.
check() {
    a="$1"; r="$2"; shift 2
    echo "COLINUX-CHECK $SCENARIO $a $r $*"
}
# check_eq ASSERTION EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then check "$1" PASS "$3"; else check "$1" FAIL "expected=$2 got=$3"; fi
}
# colinux_bridge_tap IFACE TAP: put IFACE on a bridge (br-IFACE, made if IFACE is
# not bridged yet) and add a new TAP to it: the pcap-bridge of the inner QEMU.
colinux_bridge_tap() {
    iface="$1"; tap="$2"
    br=$(basename "$(readlink /sys/class/net/$iface/master 2>/dev/null)" 2>/dev/null)
    if [ -z "$br" ] || [ "$br" = . ]; then
        br="br-$iface"
        ip link add "$br" type bridge 2>/dev/null
        ip link set "$iface" master "$br"
        ip link set "$br" up
    fi
    ip tuntap add dev "$tap" mode tap 2>/dev/null
    ip link set "$tap" master "$br"
    ip link set "$tap" up
}
