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

# inner_monitor MONITOR CONF QEMU_ARGS [COMMAND...]: runs COMMAND followed by
# the inner monitor's command line (no COMMAND: the monitor itself), and
# returns its status. MONITOR qemu: the arguments in the file QEMU_ARGS, one a
# line; otherwise colinux-daemon --on-reboot=exit $COLINUX_FLAGS @CONF. COMMAND may be a
# wrapper (timeout ...), printf '%s\n' (the command line, one argument a line)
# or exec (in a background job: $! is then the monitor process itself).
inner_monitor() {
    _im=$1; _iconf=$2; _iargs=$3; shift 3
    if [ "$_im" = qemu ]; then
        while IFS= read -r _iarg; do set -- "$@" "$_iarg"; done < "$_iargs"
    else
        # shellcheck disable=SC2086 # COLINUX_FLAGS: words for the daemon (bench-boot's --exit-stats)
        set -- "$@" colinux-daemon --on-reboot=exit ${COLINUX_FLAGS:-} "@$_iconf"
    fi
    "$@"
}

# alive PID: the process runs (a zombie the shell has not reaped yet does not).
alive() { [ -e "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }

# wait_file FILE TEXT SECONDS [PID]: waits (0.1 s polls) for TEXT in FILE;
# with PID, only while PID lives (looking once more after it ended).
wait_file() {
    _wi=0
    while [ "$_wi" -lt $(($3 * 10)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        if [ -n "$4" ] && ! alive "$4"; then
            grep -q "$2" "$1" 2>/dev/null
            return $?
        fi
        sleep 0.1; _wi=$((_wi + 1))
    done
    return 1
}

# wait_guest TEXT SECONDS: waits for TEXT in this boot's guest console log.
wait_guest() { wait_file "$OUT/guest-$BOOT.log" "$1" "$2"; }

# serve_work ADDR:PORT: busybox httpd serving /work there (assertion host-httpd).
serve_work() {
    if httpd -p "$1" -h /work; then
        check host-httpd PASS "busybox httpd on $1 serving /work"
    else
        check host-httpd FAIL "busybox httpd did not start"
    fi
}

# host_tap: the persistent TAP ctap0 with 192.0.2.1/24 (the inner monitor
# attaches to it; the guest is 192.0.2.2).
host_tap() {
    ip tuntap add dev ctap0 mode tap
    ip addr add 192.0.2.1/24 dev ctap0
    ip link set ctap0 up
}

# monitor_mem: "rss_kb=N hwm_kb=N own_kb=N" of the running inner monitor
# (the first process named colinux-daemon or qemu-system-x86), or nothing.
# rss/hwm: what the monitor costs the host in memory, guest RAM it touched
# included. own: the Rss of every mapping but the largest one (guest RAM) in
# /proc/PID/smaps: what the monitor itself costs. With SAVE, a copy of the
# smaps goes there too (which mappings the own memory is), and its resident
# program text pages to SAVE.text (text_pages).
monitor_mem() {
    pid=""
    for st in /proc/[0-9]*/status; do
        read -r _ name < "$st" 2>/dev/null || continue
        case "$name" in
        colinux-daemon|qemu-system-x86) pid=${st#/proc/}; pid=${pid%/status}; break ;;
        esac
    done
    [ -n "$pid" ] || return 0
    # One read of smaps, first: the guest may end a moment later.
    smaps=${1:-/tmp/monitor-mem.smaps}
    cat "/proc/$pid/smaps" > "$smaps" 2>/dev/null
    status=$(cat "/proc/$pid/status" 2>/dev/null)
    # Last, as it takes a while (the process may be gone by then).
    [ -n "$1" ] && text_pages "$pid" "$smaps" > "$smaps.text"
    own=$(own_kb "$smaps")
    [ -n "$1" ] || rm -f "$smaps"
    # An exiting process has no VmRSS any more: say nothing.
    echo "$status" | awk -v own="$own" '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
        END { if (rss != "") print "rss_kb=" rss " hwm_kb=" hwm (own != "" ? " own_kb=" own : "") }'
}

# kvm_counts: KVM's in-kernel counters for the VMs alive now (the benchmarks
# run one at a time), summed over their vCPUs, as "kvm_NAME=N" words: every
# exit (exits), and by kind the ones KVM answers without the monitor
# (halt, interrupt, interrupt window, instruction emulation, page faults) or
# hands to it (io, mmio). Nothing without debugfs.
kvm_counts() {
    d=/sys/kernel/debug/kvm
    [ -r "$d/exits" ] || return 0
    # One process reads them all: the VM may be gone a moment later.
    (cd "$d" && awk '{ printf "%skvm_%s=%s", sep, FILENAME, $1; sep = " " } END { print "" }' \
        exits io_exits mmio_exits halt_exits irq_exits irq_window_exits \
        insn_emulation pf_taken irq_injections hypercalls 2>/dev/null)
}

# counters [PID]: one line of numbers, to diff with counters_delta: KVM's
# exits, I/O exits, halt exits and injected interrupts (0 where debugfs is not
# readable), the host VM's busy and total CPU jiffies (/proc/stat), then
# process PID's (the monitor's) CPU time in clock ticks: user and system
# together, and the part of it spent running the guest (0 0 without a PID).
counters() {
    d=/sys/kernel/debug/kvm
    for f in exits io_exits halt_exits irq_injections; do
        cat "$d/$f" 2>/dev/null || echo 0
    done | tr '\n' ' '
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d ", t - $5 - $6, t; exit }' /proc/stat
    # /proc/PID/stat after the ")" closing the name: field 3 is the first
    sed 's/.*) //' "/proc/${1:-none}/stat" 2>/dev/null |
        awk '{ print $12 + $13, $41; ok = 1 } END { if (!ok) print 0, 0 }'
}

# counters_delta BEFORE AFTER MIB: what happened between two `counters`
# lines, per MiB moved: kvm_exits_per_mib=N kvm_io_per_mib=N
# kvm_halt_per_mib=N kvm_irq_per_mib=N, host_busy_pct=N (the share of the
# host VM's CPU time that was not idle or waiting on I/O), and the monitor's
# CPU time in ms: monitor_own_ms_per_mib=N (its own work: user and system
# time less the guest's) and guest_ms_per_mib=N (running the guest).
counters_delta() {
    echo "$1 $2" | awk -v mib="$3" '{
        if (mib <= 0) mib = 1
        tick = 10 # ms: USER_HZ is 100
        printf "kvm_exits_per_mib=%.0f kvm_io_per_mib=%.0f kvm_halt_per_mib=%.0f kvm_irq_per_mib=%.0f host_busy_pct=%.0f monitor_own_ms_per_mib=%.1f guest_ms_per_mib=%.1f\n",
            ($9 - $1) / mib, ($10 - $2) / mib, ($11 - $3) / mib, ($12 - $4) / mib,
            (($14 - $6) > 0 ? 100 * ($13 - $5) / ($14 - $6) : 0),
            (($15 - $16) - ($7 - $8)) * tick / mib, ($16 - $8) * tick / mib }'
}

# text_pages PID SMAPS: which pages of process PID's program text are
# resident: a line "start=ADDR offset=FILEOFF pages=N" for its executable's
# r-xp mapping, then one 0 or 1 per page (pagemap's present bit). The kernel
# maps file pages in 64 KiB windows around each one touched, so this shows
# which parts of the program a run touched at all.
text_pages() {
    exe=$(readlink "/proc/$1/exe")
    awk -v exe="$exe" '$2 == "r-xp" && $6 == exe { split($1, a, "-"); print a[1], a[2], $3; exit }' "$2" | {
        read -r start end off || return 0
        first=$((0x$start / 4096)); n=$(( (0x$end - 0x$start) / 4096 ))
        echo "start=$start offset=$off pages=$n"
        dd if="/proc/$1/pagemap" bs=8 skip="$first" count="$n" 2>/dev/null | od -An -v -tx8 |
            tr -s ' ' '\n' | awk 'NF { printf "%d", (substr($1, 1, 1) ~ /[89a-f]/) } END { print "" }'
    }
}

# own_kb SMAPS: the sum of Rss over the mappings in SMAPS less the Rss of
# the largest mapping (by Size), in kB; nothing if SMAPS cannot be read.
own_kb() {
    awk '
        function done() { tot += rss; if (size > big) { big = size; bigrss = rss } }
        /^[0-9a-f]+-[0-9a-f]+ / { if (n++) done(); size = 0; rss = 0; next }
        /^Size:/ { size = $2 }
        /^Rss:/ { rss = $2 }
        END { if (n) { done(); print tot - bigrss } }' "$1" 2>/dev/null
}

# confarg KEY: the value of KEY=value on the conf's kernel line ("" if absent).
confarg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$CONF" | head -1; }

# colinux_missing: the capabilities in $NEEDS colinux-daemon lacks ("" = none).
colinux_missing() {
    command -v colinux-daemon > /dev/null 2>&1 || { echo "no colinux-daemon in the host VM"; return; }
    caps=$(timeout 10 colinux-daemon --capabilities 2>/dev/null)
    miss=""
    for c in $NEEDS; do
        echo "$caps" | grep -q "\"$c\"" || miss="$miss $c"
    done
    [ -n "$miss" ] && echo "lacks$miss (reports $caps)"
}

# bench_rounds FUNC: the benchmarks' round loop. Rounds colinux.first_round ..
# + colinux.rounds - 1; odd rounds run qemu first, even ones colinux first;
# FUNC MONITOR ROUND runs one. colinux is skipped (and said unsupported once)
# when it lacks $NEEDS.
bench_rounds() {
    first=$(confarg colinux.first_round); first=${first:-1}
    rounds=$(confarg colinux.rounds); rounds=${rounds:-2}
    why=$(colinux_missing)
    [ -n "$why" ] && echo "COLINUX-BENCH monitor=colinux unsupported $why"
    rnd=$first
    while [ "$rnd" -lt $((first + rounds)) ]; do
        if [ $((rnd % 2)) = 1 ]; then order="qemu colinux"; else order="colinux qemu"; fi
        for mon in $order; do
            [ "$mon" = colinux ] && [ -n "$why" ] && continue
            "$1" "$mon" "$rnd"
        done
        rnd=$((rnd + 1))
    done
}

# bench_guest_run MONITOR ROUND WHAT: one boot of benchmark WHAT whose guest
# measures (the script's run_monitor MONITOR LOG starts the monitor); its
# COLINUX-BENCH lines are echoed with monitor= and round=, then the monitor's
# memory when the guest said COLINUX-BENCH-SAMPLE ("after=WHAT" and
# monitor_mem's fields), and MONITOR-ROUND asserts that the guest said
# bench-ran PASS.
bench_guest_run() {
    log="$OUT/bench-$1-$2.log"
    : > "$log"; rm -f "$log.mem"
    # The guest says COLINUX-BENCH-SAMPLE when its measurements are done and
    # waits a moment: the monitor's memory then is what the work left behind.
    ( wait_file "$log" "COLINUX-BENCH-SAMPLE" "${BOOT_TIMEOUT:-300}" && monitor_mem "$log.smaps" > "$log.mem" ) &
    sampler=$!
    echo "COLINUX-HOST BOOT $2 START $(cut -d' ' -f1 /proc/uptime) $1"
    run_monitor "$1" "$log"
    rc=$?
    kill "$sampler" 2>/dev/null
    echo "COLINUX-HOST BOOT $2 EXIT $rc $(cut -d' ' -f1 /proc/uptime)"
    tr -d '\r' < "$log" | grep '^COLINUX-BENCH ' | sed "s/^COLINUX-BENCH /COLINUX-BENCH monitor=$1 round=$2 /"
    [ -s "$log.mem" ] && echo "COLINUX-BENCH monitor=$1 round=$2 after=$3 $(cat "$log.mem")"
    if tr -d '\r' < "$log" | grep -q "COLINUX-CHECK [^ ]* bench-ran PASS"; then
        check "$1-$2" PASS "exit $rc, log $log"
    else
        check "$1-$2" FAIL "exit $rc; last line: $(tr -d '\r' < "$log" | grep -v '^$' | tail -n 1 | cut -c1-200)"
    fi
}

# colinux_virtiofsd TAG VIRTIOFSD ARGS...: the inner QEMU's side of share TAG
# (prepare.sh, before each boot). A virtiofsd of an earlier boot still holding
# TAG's socket (its QEMU never connected) is stopped first; this one runs in
# the background (it ends by itself when QEMU disconnects), logging to
# /work/out/virtiofsd-TAG.log; returns once its socket is there, or fails
# with the log's tail when it dies or no socket comes within 10 s.
colinux_virtiofsd() {
    tag="$1"; shift
    sock="/run/$tag.sock"; log="/work/out/virtiofsd-$tag.log"
    old=$(cat "$sock.pid" 2>/dev/null)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
        echo "colinux_virtiofsd: stopping the virtiofsd of an earlier boot (pid $old)"
        kill "$old" 2>/dev/null
        i=0
        while kill -0 "$old" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$old" 2>/dev/null
    fi
    rm -f "$sock" "$sock.pid"
    echo "=== boot ${BOOT:-?}: $*" >> "$log"
    "$@" >> "$log" 2>&1 < /dev/null &
    pid=$!
    i=0
    while [ ! -S "$sock" ]; do
        if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
            check "virtiofsd-$tag" FAIL "no socket $sock from: $* ($(tail -3 "$log" | tr '\n' ' '))"
            return 1
        fi
        sleep 0.1; i=$((i + 1))
    done
    echo "colinux_virtiofsd: $tag on $sock (pid $pid)"
}
