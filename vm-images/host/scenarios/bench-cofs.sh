#!/bin/sh
# bench-cofs host side (`cargo xtask bench cofs`; the scenario has boots = 0).
#   setup: a tmpfs at /work/bench holding share/, the directory the conf
#          shares as cofs0 (so the host VM's disk plays no part).
#   check: colinux.rounds rounds; each boots the guest once under qemu and once
#          under colinux-daemon (order alternates), same conf, same directory
#          (emptied before every run). qemu's side of the share is virtiofsd,
#          started by /work/prepare.sh (host-lib.sh's colinux_virtiofsd) right
#          before each qemu boot; it ends with that qemu. colinux-daemon serves
#          the share in-process. The guest's COLINUX-BENCH lines are echoed as
#            COLINUX-BENCH monitor=M round=R <guest fields>
#          colinux-daemon without the capabilities boot+cofs (or absent) gives
#            COLINUX-BENCH monitor=colinux unsupported <why>
#          When the guest is done it says COLINUX-BENCH-SAMPLE; the monitor's
#          memory then (see bench_guest_run) gives an after=cofs line.
#          Assertions: share, and <monitor>-<round> (that run ended, all tests ran).
. /etc/colinux/host-lib.sh
NEEDS="boot cofs"
SHARE=/work/bench/share

# run_monitor MONITOR LOG: boot the guest once, console to LOG; returns its status.
run_monitor() {
    rlog=$2
    if [ "$1" = qemu ]; then
        if [ ! -f /work/prepare.sh ]; then
            echo "no /work/prepare.sh (the inner QEMU's virtiofsd)" > "$rlog"
            return 1
        fi
        sh /work/prepare.sh || { echo "prepare.sh exited $?" > "$rlog"; return 1; }
    fi
    inner_monitor "$1" /work/colinux.conf /work/qemu.args timeout -s KILL "${BOOT_TIMEOUT:-300}" < /dev/null > "$rlog" 2>&1
}

# one MONITOR ROUND: an empty share, then a run, its lines echoed and asserted.
one() {
    export BOOT="$2"
    rm -rf "${SHARE:?}"/* "$SHARE"/.[!.]* 2>/dev/null
    bench_guest_run "$1" "$2" cofs
}

case "$1" in
setup)
    mib=$(confarg colinux.seq_mib)
    mkdir -p /work/bench
    if mount -t tmpfs -o size=$((${mib:-128} + 64))m bench /work/bench && mkdir -p "$SHARE"; then
        check share PASS "$SHARE on tmpfs ($((${mib:-128} + 64)) MiB)"
    else
        check share FAIL "cannot make $SHARE on a tmpfs"
    fi
    ;;
check)
    bench_rounds one
    ;;
esac
exit 0
