#!/bin/sh
# bench-boot host side (`cargo xtask bench boot`; the scenario has boots = 0).
#   check: colinux.rounds rounds (see bench_rounds in host-lib.sh); each boots
#          the guest once under qemu and once under colinux-daemon, same conf,
#          same host VM. For each boot, the moment the guest agent says READY:
#            COLINUX-BENCH monitor=M round=R boot_s=S rss_kb=N hwm_kb=N
#          boot_s: monitor start to READY (host VM clock); rss_kb/hwm_kb: the
#          monitor process's resident and peak memory at that moment (guest
#          RAM it touched included; own_kb: all but guest RAM), with a copy
#          of the monitor's /proc/PID/smaps beside the boot's log (LOG.smaps),
#          and KVM's in-kernel counters so far (kvm_exits=N kvm_io_exits=N ...:
#          see kvm_counts in host-lib.sh).
#          After the boot, the guest's own split (guest clock, from the boot
#          check's COLINUX-BOOTTIME line):
#            COLINUX-BENCH monitor=M round=R run_init_s=S ready_s=S
#          Assertions: <monitor>-<round> (READY seen, the guest's check passed).
#          Then the same monitor boots the Debian system image (/work/distro.conf,
#          /work/distro.qemu.args) to its serial getty:
#            COLINUX-BENCH monitor=M round=R login_s=S
#          login_s: monitor start to the getty's "login:" (50 ms polls); the guest is
#          then powered off over ssh (127.0.0.1:2222) so the next boot starts
#          clean. Assertion login-<monitor>-<round>: prompt seen, exit 0.
#          colinux-daemon runs with --exit-stats: when a vCPU stops, its exits
#          by port and MMIO page, and per 250 ms, end up in the boot's log.
. /etc/colinux/host-lib.sh
NEEDS="boot"
COLINUX_FLAGS=--exit-stats
BOOTN=0

# mark_start MONITOR / mark_exit RC: the harness's boot marks, one number per
# inner boot, so its watchdog times each boot by itself, not as host setup.
mark_start() {
    BOOTN=$((BOOTN + 1))
    echo "COLINUX-HOST BOOT $BOOTN START $(cut -d' ' -f1 /proc/uptime) $1"
}
mark_exit() { echo "COLINUX-HOST BOOT $BOOTN EXIT $1 $(cut -d' ' -f1 /proc/uptime)"; }

# one MONITOR ROUND
one() {
    bm=$1; br=$2
    log="$OUT/bench-$bm-$br.log"
    mark_start "$bm"
    start=$(cut -d' ' -f1 /proc/uptime)
    { inner_monitor "$bm" /work/colinux.conf /work/qemu.args timeout -s KILL "${BOOT_TIMEOUT:-300}" < /dev/null 2>&1; echo "$?" > /tmp/rc; } |
        awk -v out="$log" -v m="$bm" -v r="$br" -v start="$start" '
            { sub(/\r$/, ""); print > out
              if ($0 ~ /COLINUX-AGENT READY/ && !seen) {
                  seen = 1; getline up < "/proc/uptime"; close("/proc/uptime"); split(up, u, " ")
                  mem = ""; cmd = "sh -c \047. /etc/colinux/host-lib.sh; k=$(kvm_counts); echo $(monitor_mem " out ".smaps) $k\047"
                  cmd | getline mem; close(cmd)
                  printf "COLINUX-BENCH monitor=%s round=%s boot_s=%.3f %s\n", m, r, u[1] - start, mem
                  fflush() } }'
    rc=$(cat /tmp/rc)
    mark_exit "$rc"
    # where the guest's own time went (the boot check's COLINUX-BOOTTIME)
    bt=$(tr -d '\r' < "$log" | sed -n 's/^COLINUX-BOOTTIME //p' | head -n 1)
    [ -n "$bt" ] && echo "COLINUX-BENCH monitor=$bm round=$br $bt"
    if tr -d '\r' < "$log" | grep -q "COLINUX-CHECK boot init PASS"; then
        check "$bm-$br" PASS "exit $rc, log $log"
    else
        check "$bm-$br" FAIL "exit $rc; last line: $(tr -d '\r' < "$log" | grep -v '^$' | tail -n 1 | cut -c1-200)"
    fi
}

# one_login MONITOR ROUND: boot-to-login of the system image.
one_login() {
    bm=$1; br=$2
    log="$OUT/login-$bm-$br.log"
    : > "$log"
    mark_start "$bm"
    start=$(cut -d' ' -f1 /proc/uptime)
    # By bytes, not lines: the getty's "login: " ends without a newline.
    ( inner_monitor "$bm" /work/distro.conf /work/distro.qemu.args timeout -s KILL 600 < /dev/null > "$log" 2>&1; echo "$?" > /tmp/rc-login ) &
    job=$!
    i=0
    while [ "$i" -lt 5400 ] && kill -0 "$job" 2>/dev/null && ! grep -q "login:" "$log"; do
        sleep 0.05; i=$((i + 1))
    done
    if grep -q "login:" "$log"; then
        now=$(cut -d' ' -f1 /proc/uptime)
        echo "COLINUX-BENCH monitor=$bm round=$br login_s=$(awk -v a="$start" -v b="$now" 'BEGIN {printf "%.3f", b - a}')"
    fi
    # Power off over ssh (sshd may still be starting): until the monitor ends.
    i=0
    while kill -0 "$job" 2>/dev/null && [ "$i" -lt 60 ]; do
        ssh -i /etc/colinux/distro-key -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no \
            -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 -o LogLevel=ERROR \
            root@127.0.0.1 systemctl poweroff > /dev/null 2>&1
        sleep 5; i=$((i + 1))
    done
    wait "$job"
    rc=$(cat /tmp/rc-login)
    mark_exit "$rc"
    if grep -q "login:" "$log" && [ "$rc" = 0 ]; then
        check "login-$bm-$br" PASS "exit $rc, log $log"
    else
        check "login-$bm-$br" FAIL "exit $rc; last line: $(grep -v '^$' "$log" | tail -n 1 | cut -c1-200)"
    fi
}

# both MONITOR ROUND: boot-to-init, then boot-to-login.
both() {
    one "$1" "$2"
    one_login "$1" "$2"
}

case "$1" in
setup) ;;
check) bench_rounds both ;;
esac
exit 0
