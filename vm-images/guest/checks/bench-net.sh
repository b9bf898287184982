# bench-net: the guest side of `cargo xtask bench net`. eth0 (MAC
# 00:ff:c0:11:00:02) is a TAP to the host VM (guest 192.0.2.2/24, host
# 192.0.2.1); eth1 (00:ff:c0:11:00:01) is slirp (DHCP 10.0.2.15, the host VM's
# loopback is 10.0.2.2, host 127.0.0.1:17777 -> guest :7777).
# colinux.net_mib MiB of zeros go each way through busybox nc, timed on both
# sides with /proc/uptime (10 ms ticks: keep transfers well above a second):
#   tap-g2h    guest -> 192.0.2.1:5001      slirp-g2h  guest -> 10.0.2.2:5003
#   tap-h2g    host -> 192.0.2.2:5002       slirp-h2g  host -> 127.0.0.1:17777 -> :7777
# The receiver times from its first byte to EOF; the sender from start to exit.
#   COLINUX-BENCH test=T side=send|recv bytes=N secs=S
# Before each host->guest test the guest prints "COLINUX-NET BENCH-LISTEN T".
. /etc/colinux/checks/net-lib.sh
mib=$(arg colinux.net_mib); mib=${mib:-64}
cat > /tmp/recv.sh <<'R'
dd bs=1 count=1 of=/dev/null 2>/dev/null
t0=$(cut -d' ' -f1 /proc/uptime)
n=$(wc -c)
t1=$(cut -d' ' -f1 /proc/uptime)
echo "bytes=$((n + 1)) secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")" > "/tmp/recv-$1"
R
# send TEST ADDR PORT: mib MiB of zeros to ADDR:PORT, retried until connected.
send() {
    i=0
    while [ "$i" -lt 20 ]; do
        t0=$(cut -d' ' -f1 /proc/uptime)
        if dd if=/dev/zero bs=64k count=$((mib * 16)) 2>/dev/null | timeout 300 nc "$2" "$3"; then
            t1=$(cut -d' ' -f1 /proc/uptime)
            echo "COLINUX-BENCH test=$1 side=send bytes=$((mib * 1048576)) secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")"
            return 0
        fi
        sleep 1; i=$((i + 1))
    done
    echo "COLINUX-BENCH test=$1 side=send error=no-connection-to-$2:$3"
    return 1
}
# recv TEST PORT: one connection on PORT, timed.
recv() {
    rm -f "/tmp/recv-$1"
    timeout 300 nc -l -p "$2" -e sh /tmp/recv.sh "$1" &
    rpid=$!
    sleep 1
    net_mark BENCH-LISTEN "$1"
    wait $rpid
    if [ -s "/tmp/recv-$1" ]; then
        echo "COLINUX-BENCH test=$1 side=recv $(cat "/tmp/recv-$1")"
        return 0
    fi
    echo "COLINUX-BENCH test=$1 side=recv error=nothing-received"
    return 1
}
ok=0
if need_nic nic-tap 00:ff:c0:11:00:02; then
    tap=$NIC
    ip addr add 192.0.2.2/24 dev "$tap"
    send tap-g2h 192.0.2.1 5001 && ok=$((ok + 1))
    recv tap-h2g 5002 && ok=$((ok + 1))
fi
if need_nic nic-slirp 00:ff:c0:11:00:01; then
    if dhcp "$NIC"; then
        send slirp-g2h 10.0.2.2 5003 && ok=$((ok + 1))
        recv slirp-h2g 7777 && ok=$((ok + 1))
    else
        check dhcp FAIL "no slirp lease"
    fi
fi
net_mark BENCH-DONE
# The host reads the monitor's memory now, with the transfers behind it.
sleep 3
check_eq bench-ran 4 "$ok"
