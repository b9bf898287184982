#!/bin/sh
# bench-boot host side (`cargo xtask bench boot`; the scenario has boots = 0).
#   check: colinux.rounds rounds (see bench_rounds in host-lib.sh); each boots
#          the guest once under qemu and once under colinux-daemon, same conf,
#          same host VM. For each boot, the moment the guest agent says READY:
#            COLINUX-BENCH monitor=M round=R boot_s=S rss_kb=N hwm_kb=N
#          boot_s: monitor start to READY (host VM clock); rss_kb/hwm_kb: the
#          monitor process's resident and peak memory at that moment (guest
#          RAM it touched included).
#          Assertions: <monitor>-<round> (READY seen, the guest's check passed).
. /etc/colinux/host-lib.sh
NEEDS="boot"

# one MONITOR ROUND
one() {
    bm=$1; br=$2
    log="$OUT/bench-$bm-$br.log"
    if [ "$bm" = qemu ]; then
        set --
        while IFS= read -r a; do set -- "$@" "$a"; done < /work/qemu.args
    else
        set -- colinux-daemon @/work/colinux.conf
    fi
    start=$(cut -d' ' -f1 /proc/uptime)
    { timeout -s KILL "${BOOT_TIMEOUT:-300}" "$@" < /dev/null 2>&1; echo "$?" > /tmp/rc; } |
        awk -v out="$log" -v m="$bm" -v r="$br" -v start="$start" '
            { sub(/\r$/, ""); print > out
              if ($0 ~ /COLINUX-AGENT READY/ && !seen) {
                  seen = 1; getline up < "/proc/uptime"; close("/proc/uptime"); split(up, u, " ")
                  mem = ""; cmd = "sh -c \". /etc/colinux/host-lib.sh; monitor_mem\""
                  cmd | getline mem; close(cmd)
                  printf "COLINUX-BENCH monitor=%s round=%s boot_s=%.3f %s\n", m, r, u[1] - start, mem
                  fflush() } }'
    rc=$(cat /tmp/rc)
    if tr -d '\r' < "$log" | grep -q "COLINUX-CHECK boot init PASS"; then
        check "$bm-$br" PASS "exit $rc, log $log"
    else
        check "$bm-$br" FAIL "exit $rc; last line: $(tr -d '\r' < "$log" | grep -v '^$' | tail -n 1 | cut -c1-200)"
    fi
}

case "$1" in
setup) ;;
check) bench_rounds one ;;
esac
exit 0
