#!/bin/sh
# cobd-crash host side: the scenario has boots = 0, so this script runs the
# inner monitor itself, REPS times on the same ext4 image /work/crash.img:
#   setup: mke2fs -t ext4 the (zero) image.
#   check: for r in 1..REPS: start the monitor (qemu from /work/qemu.args, or
#     colinux-daemon @/work/colinux.conf) with its console in $OUT/guest-r.log;
#     once the guest reported its first durable record, wait a random 0.3-4 s
#     and SIGKILL the monitor process (like pulling the plug: what the monitor
#     had written is in the host VM's page cache, anything it held back is lost).
#     Then, on the image (no mount):
#       kill-r     the monitor was still running mid-stream and died of SIGKILL
#       fsck-r     the journal is replayed (e2fsck -E journal_only; a SIGKILL
#                  leaves needs_recovery set, that is expected, not corruption),
#                  then `e2fsck -fn` finds nothing to fix (exit 0)
#       durable-r  every "COLINUX-CRASH durable" record the host received is on
#                  disk: the file with its SHA-256 (read with debugfs rdump), its
#                  "seq K sha S" line in the log, and the atomically replaced
#                  state file complete (body matches its trailer) at version >= K
#   and at the end: reps  (all REPS repetitions ran)
# REPS = colinux.crash_reps= on the kernel line of the conf (default 10).
. /etc/colinux/host-lib.sh
IMG=/work/crash.img
REPS=$(sed -n 's/.*colinux\.crash_reps=\([0-9]*\).*/\1/p' "$CONF" | head -1)
REPS=${REPS:-10}

# start_monitor LOG: start the inner monitor in the background; sets MPID to
# the monitor process itself (sh execs the program in the forked child).
start_monitor() {
    inner_monitor "$MONITOR" /work/colinux.conf /work/qemu.args exec < /dev/null > "$1" 2>&1 &
    MPID=$!
}

# verify REP LOG  (host-lib's check() sets the globals a and r: avoid them): check the durable records of LOG against the replayed image.
verify() {
    vr=$1; log=$2
    tr -d '\r' < "$log" | grep '^COLINUX-CRASH durable .* end$' > /tmp/durable
    n=$(wc -l < /tmp/durable)
    run=$(sed -n '1s/.* run=\([^ ]*\) .*/\1/p' /tmp/durable)
    rm -rf /tmp/rd && mkdir -p /tmp/rd
    /usr/sbin/debugfs -R "rdump /crash /tmp/rd" "$IMG" > /tmp/rdump.log 2>&1
    bad=""; last=0
    while read -r _ _ runw seqw filew shaw _; do
        k=${seqw#seq=}; f=${filew#file=}; s=${shaw#sha=}
        got=$(sha256sum "/tmp/rd/crash/$run/$f" 2>/dev/null | cut -d' ' -f1)
        [ "$got" = "$s" ] || bad="$bad $f:${got:-missing}"
        grep -qx "seq $k sha $s" /tmp/rd/crash/log 2>/dev/null || bad="$bad log-seq$k"
        last=$k
    done < /tmp/durable
    st=/tmp/rd/crash/state
    if [ "$last" -gt 0 ]; then
        ver=$(sed -n '1s/^version //p' "$st" 2>/dev/null)
        trailer=$(sed -n '$s/^sha //p' "$st" 2>/dev/null)
        body=$(sed '1d;$d' "$st" 2>/dev/null | sha256sum | cut -d' ' -f1)
        if [ -z "$ver" ] || [ "$body" != "$trailer" ]; then
            bad="$bad state-torn(version=${ver:-none})"
        elif [ "$ver" -lt "$last" ]; then
            bad="$bad state-old(version=$ver<$last)"
        fi
    fi
    if [ "$n" -eq 0 ]; then
        check "durable-$vr" FAIL "no durable record reached the host"
        return 1
    elif [ -z "$bad" ]; then
        check "durable-$vr" PASS "$n records run=$run (files+sha256, log lines, state version ${ver:-?} >= $last)"
    else
        check "durable-$vr" FAIL "$n records run=$run; lost or wrong:$(echo "$bad" | cut -c1-400)"
        return 1
    fi
}

case "$1" in
setup)
    [ -e /etc/mtab ] || ln -s /proc/mounts /etc/mtab
    if /usr/sbin/mke2fs -q -F -t ext4 -L crash "$IMG" > /tmp/mke2fs.log 2>&1; then
        check mkfs PASS "ext4 on $IMG ($(($(wc -c < "$IMG") / 1048576)) MiB)"
    else
        check mkfs FAIL "mke2fs: $(tail -n 2 /tmp/mke2fs.log)"
    fi
    ;;
check)
    ok=0
    rep=1
    while [ "$rep" -le "$REPS" ]; do
        log="$OUT/guest-$rep.log"
        rm -f "$log"
        echo "COLINUX-HOST BOOT $rep START $(cut -d' ' -f1 /proc/uptime) $MONITOR"
        start_monitor "$log"
        pass=1
        if wait_file "$log" "COLINUX-CRASH durable" "${BOOT_TIMEOUT:-180}" "$MPID" && alive "$MPID"; then
            delay_ms=$((300 + RANDOM % 3700))
            sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
            if grep -q "COLINUX-CRASH idle" "$log" || ! alive "$MPID"; then
                check "kill-$rep" FAIL "the guest stopped writing before the kill ($(grep -c 'COLINUX-CRASH durable' "$log") records)"
                kill -9 "$MPID" 2>/dev/null
                wait "$MPID"
                pass=0
            else
                kill -9 "$MPID"
                wait "$MPID"
                rc=$?
                if [ "$rc" = 137 ]; then
                    check "kill-$rep" PASS "SIGKILL $MONITOR pid $MPID after first record + ${delay_ms} ms, $(tr -d '\r' < "$log" | grep -c 'COLINUX-CRASH durable .* end$') complete records printed before it"
                else
                    check "kill-$rep" FAIL "monitor exit status $rc, not 137 (SIGKILL)"
                    pass=0
                fi
            fi
        else
            if alive "$MPID"; then
                why="no durable record within ${BOOT_TIMEOUT:-180}s"
                kill -9 "$MPID" 2>/dev/null
                wait "$MPID"
            else
                wait "$MPID"
                why="the monitor exited (status $?) before the first durable record"
            fi
            # The monitor's first words about why (colinux-daemon says "the guest stopped: ...").
            said=$(tr -d '\r' < "$log" | grep -m1 'colinux-daemon:\|qemu-system' | cut -c1-200)
            [ -n "$said" ] || said=$(tr -d '\r' < "$log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-200)
            check "kill-$rep" FAIL "$why (monitor log $OUT/guest-$rep.log: $said)"
            pass=0
        fi
        echo "COLINUX-HOST BOOT $rep EXIT killed $(cut -d' ' -f1 /proc/uptime)"
        feat=$(/usr/sbin/dumpe2fs -h "$IMG" 2>/dev/null | sed -n 's/^Filesystem features: *//p')
        case "$feat" in *needs_recovery*) rec="needs_recovery set" ;; *) rec="journal clean" ;; esac
        /usr/sbin/e2fsck -E journal_only -y "$IMG" > /tmp/replay.log 2>&1
        replay=$?
        /usr/sbin/e2fsck -fn "$IMG" > /tmp/fsck.log 2>&1
        fsck=$?
        if [ "$replay" -le 1 ] && [ "$fsck" = 0 ]; then
            check "fsck-$rep" PASS "$rec; journal replay exit $replay; e2fsck -fn clean: $(tail -n 1 /tmp/fsck.log)"
        else
            check "fsck-$rep" FAIL "$rec; journal replay exit $replay; e2fsck -fn exit $fsck: $(grep -v '^Pass\|^e2fsck' /tmp/fsck.log | head -n 5 | tr '\n' '|' | cut -c1-400)"
            cp /tmp/fsck.log "$OUT/fsck-$rep.log"
            pass=0
            # Leave a consistent image for the next repetition.
            /usr/sbin/e2fsck -fy "$IMG" > "$OUT/fsck-fix-$rep.log" 2>&1
        fi
        verify "$rep" "$log" || pass=0
        [ "$pass" = 1 ] && ok=$((ok + 1))
        rep=$((rep + 1))
    done
    check_eq reps "$REPS" "$ok"
    ;;
esac
exit 0
