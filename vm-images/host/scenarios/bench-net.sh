#!/bin/sh
# bench-net host side (`cargo xtask bench net`; the scenario has boots = 0).
#   setup: persistent TAP ctap0 with 192.0.2.1/24 (as net-tuntap does); both
#          monitors attach to it in turn.
#   check: colinux.rounds rounds, each booting the guest once under qemu and
#          once under colinux-daemon (order alternates). Per run the host:
#          receives tap-g2h on :5001 and slirp-g2h on :5003 (guest connects to
#          192.0.2.1 / 10.0.2.2), and sends colinux.net_mib MiB for tap-h2g
#          (192.0.2.2:5002) and slirp-h2g (127.0.0.1:17777 -> guest :7777) when
#          the guest says "COLINUX-NET BENCH-LISTEN T". Console lines:
#            COLINUX-BENCH monitor=M round=R test=T side=send|recv bytes=N secs=S
#          (guest-side ones come from the guest's console log), and
#            COLINUX-BENCH monitor=colinux unsupported <why>
#          when colinux-daemon lacks boot+net-tuntap+net-slirp.
#          When the guest says "COLINUX-NET BENCH-DONE" (every transfer and
#          its connection over), the monitor's memory (monitor_mem):
#            COLINUX-BENCH monitor=M round=R after=net rss_kb=N hwm_kb=N own_kb=N
#          Each host-side line ends with what KVM, the host VM's CPU and the
#          monitor process did during that transfer, per MiB (counters_delta
#          in host-lib.sh): the monitor's own CPU time is the frame path's cost.
#          Assertions: host-tap, and <monitor>-<round> (all four transfers ran).
. /etc/colinux/host-lib.sh
NEEDS="boot net-tuntap net-slirp"
MIB=$(confarg colinux.net_mib); MIB=${MIB:-64}

# start_monitor MONITOR LOG: boot the guest in the background; sets MPID.
start_monitor() {
    inner_monitor "$1" /work/colinux.conf /work/qemu.args exec < /dev/null > "$2" 2>&1 &
    MPID=$!
}

cat > /tmp/recv.sh <<'R'
. /etc/colinux/host-lib.sh
dd bs=1 count=1 of=/dev/null 2>/dev/null
mpid=$(cat /tmp/monitor-pid 2>/dev/null)
c0=$(counters "$mpid")
t0=$(cut -d' ' -f1 /proc/uptime)
n=$(wc -c)
t1=$(cut -d' ' -f1 /proc/uptime)
c1=$(counters "$mpid")
echo "bytes=$((n + 1)) secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") $(counters_delta "$c0" "$c1" "$(((n + 1) / 1048576))")" > "/tmp/recv-$1"
R

# send TEST ADDR PORT: MIB MiB of zeros, timed; one result line.
send() {
    c0=$(counters "$MPID")
    t0=$(cut -d' ' -f1 /proc/uptime)
    if dd if=/dev/zero bs=64k count=$((MIB * 16)) 2>/dev/null | timeout 120 nc "$2" "$3"; then
        t1=$(cut -d' ' -f1 /proc/uptime)
        c1=$(counters "$MPID")
        echo "COLINUX-BENCH test=$1 side=send bytes=$((MIB * 1048576)) secs=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") $(counters_delta "$c0" "$c1" "$MIB")"
    else
        echo "COLINUX-BENCH test=$1 side=send error=nc-$2:$3-failed"
    fi
}

# one MONITOR ROUND: a boot with the four transfers; lines echoed, asserted.
one() {
    m=$1; rn=$2
    log="$OUT/bench-$m-$rn.log"
    res="$OUT/bench-$m-$rn.host"
    : > "$res"
    rm -f /tmp/recv-*
    timeout 600 nc -l -p 5001 -e sh /tmp/recv.sh tap-g2h &
    l1=$!
    timeout 600 nc -l -p 5003 -e sh /tmp/recv.sh slirp-g2h &
    l2=$!
    [ "$m" = qemu ] && [ -f /work/prepare.sh ] && sh /work/prepare.sh
    echo "COLINUX-HOST BOOT $rn START $(cut -d' ' -f1 /proc/uptime) $m"
    start_monitor "$m" "$log"
    echo "$MPID" > /tmp/monitor-pid
    if wait_file "$log" "COLINUX-NET BENCH-LISTEN tap-h2g" "${BOOT_TIMEOUT:-600}" "$MPID"; then
        send tap-h2g 192.0.2.2 5002 >> "$res"
    fi
    if wait_file "$log" "COLINUX-NET BENCH-LISTEN slirp-h2g" "${BOOT_TIMEOUT:-600}" "$MPID"; then
        send slirp-h2g 127.0.0.1 17777 >> "$res"
        # The monitor's memory with all four transfers behind it: once the
        # guest says so (its last connection closed, so slirp has freed that
        # socket's 256 KiB of buffers), while the guest waits a moment, as
        # bench-cobd and bench-cofs sample after COLINUX-BENCH-SAMPLE.
        if wait_file "$log" "COLINUX-NET BENCH-DONE" 60 "$MPID"; then
            sleep 1
            mem=$(monitor_mem "$log.smaps")
            [ -n "$mem" ] && echo "COLINUX-BENCH after=net $mem" >> "$res"
        fi
    fi
    i=0
    while alive "$MPID" && [ "$i" -lt 600 ]; do sleep 0.5; i=$((i + 1)); done
    kill -9 "$MPID" 2>/dev/null
    wait "$MPID"
    rc=$?
    echo "COLINUX-HOST BOOT $rn EXIT $rc $(cut -d' ' -f1 /proc/uptime)"
    kill "$l1" "$l2" 2>/dev/null
    for t in tap-g2h slirp-g2h; do
        [ -s "/tmp/recv-$t" ] && echo "COLINUX-BENCH test=$t side=recv $(cat "/tmp/recv-$t")" >> "$res"
    done
    { tr -d '\r' < "$log" | grep '^COLINUX-BENCH '; cat "$res"; } | sed "s/^COLINUX-BENCH /COLINUX-BENCH monitor=$m round=$rn /"
    got=$(tr -d '\r' < "$log" | grep '^COLINUX-BENCH ' | cat - "$res" | grep -c 'secs=')
    if [ "$got" = 8 ]; then
        check "$m-$rn" PASS "4 transfers of $MIB MiB timed on both sides, exit $rc"
    else
        check "$m-$rn" FAIL "$got of 8 timings (exit $rc); last line: $(tr -d '\r' < "$log" | grep -v '^$' | tail -n 1 | cut -c1-200)"
    fi
}

case "$1" in
setup)
    host_tap
    if ip addr show ctap0 | grep -q 192.0.2.1; then
        check host-tap PASS "ctap0 192.0.2.1/24"
    else
        check host-tap FAIL "ctap0 not configured"
    fi
    ;;
check)
    bench_rounds one
    ;;
esac
exit 0
