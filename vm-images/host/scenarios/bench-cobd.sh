#!/bin/sh
# bench-cobd host side (`cargo xtask bench cobd`; the scenario has boots = 0).
#   setup: a tmpfs at /work/bench holding disk.img (colinux.disk_mib MiB,
#          written once with zeros so no monitor pays for page allocation).
#   check: colinux.rounds rounds; each boots the guest once under qemu and once
#          under colinux-daemon (order alternates), same conf, same disk file.
#          The guest's COLINUX-BENCH lines are echoed on the console as
#            COLINUX-BENCH monitor=M round=R <guest fields>
#          colinux-daemon without the capabilities boot+cobd (or absent) gives
#            COLINUX-BENCH monitor=colinux unsupported <why>
#          When the guest is done it says COLINUX-BENCH-SAMPLE; the monitor's
#          memory then (see bench_guest_run) gives an after=cobd line.
#          Assertions: disk, and <monitor>-<round> (that run ended, all tests ran).
. /etc/colinux/host-lib.sh
NEEDS="boot cobd"

# run_monitor MONITOR LOG: boot the guest once, console to LOG; returns its status.
run_monitor() {
    inner_monitor "$1" /work/colinux.conf /work/qemu.args timeout -s KILL "${BOOT_TIMEOUT:-300}" < /dev/null > "$2" 2>&1
}

# one MONITOR ROUND: a run, its lines echoed and asserted.
one() {
    bench_guest_run "$1" "$2" cobd
}

case "$1" in
setup)
    mib=$(confarg colinux.disk_mib)
    mkdir -p /work/bench
    mount -t tmpfs -o size=$((${mib:-256} + 16))m bench /work/bench
    if dd if=/dev/zero of=/work/bench/disk.img bs=1M count="${mib:-256}" 2>/dev/null; then
        check disk PASS "/work/bench/disk.img ${mib:-256} MiB on tmpfs"
    else
        check disk FAIL "cannot make /work/bench/disk.img"
    fi
    ;;
check)
    bench_rounds one
    ;;
esac
exit 0
