#!/bin/sh
# vt-console host side: the classic console of a sysvinit system image.
# check (boots = 0, all of it here):
#   run 1: colinux-daemon -d --name vt @conf returns once the VM is up;
#     colinux-console -a vt --screen shows tty1's getty ("login:") in 25
#     lines and the serial line (a console's replay) shows sysvinit entering
#     runlevel 2; typed with colinux-console -a vt --vt: root (no password),
#     echo VT-$((6*7)) (the screen shows VT-42), stty size (25 80), Ctrl-] 2
#     (Alt-F2: tty2's getty), Ctrl-] 1 (Alt-F1: tty1 again, as it was left),
#     poweroff: the daemon ends and its runtime files go away.
#   run 2: colinux-daemon --foreground --name vt2 @conf cocon=100x30 (a child
#     of this script, for its exit status): --screen has 30 lines, stty size
#     typed after logging in says 30 100, poweroff ends it with status 0.
# After each typed line the screen is polled for the answer (a real image in
# nested TCG is slow, and its speed varies). The last --screen dump of every
# step is kept as $OUT/screen-<step>.txt, the serial lines of run 1 as
# $OUT/serial-1.txt and run 2's output as $OUT/daemon-2.log.
. /etc/colinux/host-lib.sh

RUNDIR=/run/colinux
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# shown STEP: the last non-empty lines of that step's screen, on one line.
shown() { grep -v '^ *$' "$OUT/screen-$1.txt" 2>/dev/null | tail -n 4 | tr '\n' '|'; }
# wait_screen NAME PID STEP SECONDS PATTERN...: poll NAME's screen until it
# has a line matching each PATTERN (grep -E); the dump stays in
# $OUT/screen-STEP.txt. Fails early when the daemon PID is gone.
wait_screen() {
    n=$1 p=$2 st=$3 secs=$4
    shift 4
    t=$(now)
    while :; do
        colinux-console -a "$n" --screen > "$OUT/screen-$st.txt" 2>&1
        ok=1
        for pat in "$@"; do
            grep -qE "$pat" "$OUT/screen-$st.txt" || { ok=0; break; }
        done
        [ "$ok" = 1 ] && return 0
        kill -0 "$p" 2>/dev/null || return 1
        [ "$(since "$t" | cut -d. -f1)" -ge "$secs" ] && return 1
        sleep 1
    done
}
# type_vt NAME TEXT: TEXT (printf escapes: \n Enter, \035 Ctrl-]) typed on
# NAME's screen keyboard.
type_vt() {
    printf "$2" | timeout 20 colinux-console -a "$1" --vt --detach-after 2 > /dev/null 2>&1
}
# serial NAME: what a console attached to NAME's serial line now sees.
serial() { timeout 10 colinux-console -a "$1" --detach-after 1 < /dev/null 2>/dev/null | tr -d '\r'; }
# wait_serial NAME PID SECONDS TEXT: until NAME's serial line has shown TEXT
# (kept in $OUT/serial-1.txt).
wait_serial() {
    t=$(now)
    while :; do
        serial "$1" > "$OUT/serial-1.txt"
        grep -q "$4" "$OUT/serial-1.txt" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(since "$t" | cut -d. -f1)" -ge "$3" ] && return 1
        sleep 1
    done
}
# wait_gone PID SECONDS: until PID has exited.
wait_gone() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt "$(($2 * 2))" ]; do
        sleep 0.5; i=$((i + 1))
    done
    ! kill -0 "$1" 2>/dev/null
}
# login_root NAME PID STEP: log in as root at the getty on the screen.
login_root() {
    type_vt "$1" 'root\n'
    wait_screen "$1" "$2" "$3" 120 'root@colinux:~# *$'
}
# rows STEP: how many lines that step's --screen printed.
rows() { wc -l < "$OUT/screen-$1.txt" | tr -d ' '; }
# widest STEP: the longest line of that step's --screen.
widest() { awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }' "$OUT/screen-$1.txt"; }

case "$1" in
setup) ;;
check)
    # --- run 1: detached, the default 80x25 screen ---------------------------
    PIDFILE=/tmp/vt.pid
    t0=$(now)
    out=$(timeout 120 colinux-daemon -d --name vt -p "$PIDFILE" @"$CONF" 2>&1)
    rc=$?
    pid=$(cat "$PIDFILE" 2>/dev/null)
    if [ "$rc" = 0 ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$RUNDIR/vt.sock" ]; then
        check daemon-detached PASS "pid $pid, socket $RUNDIR/vt.sock, -d returned after $(since "$t0") s"
    else
        check daemon-detached FAIL "exit $rc, pid '${pid}': $out"
        exit 0
    fi
    LOG="$RUNDIR/$pid.log"

    # The serial line has the kernel's console: sysvinit's own messages.
    if wait_serial vt "$pid" 540 "INIT: Entering runlevel: 2"; then
        check sysvinit-runlevel PASS "serial line, $(since "$t0") s after the start: $(grep -m1 'INIT: version' "$OUT/serial-1.txt"); INIT: Entering runlevel: 2"
    else
        check sysvinit-runlevel FAIL "no 'INIT: Entering runlevel: 2' on the serial line after $(since "$t0") s: $(tail -n 3 "$OUT/serial-1.txt" | tr '\n' '|')"
    fi
    if ! colinux-console --help 2>&1 | grep -q -- '--screen'; then
        check tty1-login FAIL "colinux-console has no --screen: $(colinux-console --help 2>&1 | head -n 1)"
        kill -TERM "$pid"
        exit 0
    fi
    if wait_screen vt "$pid" tty1-login 300 'login: *$'; then
        check tty1-login PASS "tty1's getty on --screen $(since "$t0") s after the start: $(shown tty1-login)"
    else
        check tty1-login FAIL "no login: on --screen after $(since "$t0") s: $(shown tty1-login)"
    fi
    check_eq screen-rows 25 "$(rows tty1-login)"

    if login_root vt "$pid" root-login; then
        check vt-root-login PASS "typed root at tty1's login:, no password asked: $(shown root-login)"
    else
        check vt-root-login FAIL "no root prompt after typing root: $(shown root-login)"
    fi
    type_vt vt 'echo VT-$((6*7))\n'
    if wait_screen vt "$pid" command 60 '^VT-42$'; then
        check vt-command PASS "typed 'echo VT-\$((6*7))', the screen shows VT-42"
    else
        check vt-command FAIL "no VT-42 on the screen: $(shown command)"
    fi
    type_vt vt 'stty size\n'
    if wait_screen vt "$pid" stty-size 60 '^25 80$'; then
        check stty-size PASS "stty size on tty1: 25 80"
    else
        check stty-size FAIL "no '25 80' on the screen: $(shown stty-size)"
    fi

    # Alt-F2: tty2's own getty (agetty's banner names its tty), tty1 hidden.
    type_vt vt '\0352'
    if wait_screen vt "$pid" tty2 60 'tty2' 'login: *$' && ! grep -q '^VT-42$' "$OUT/screen-tty2.txt"; then
        check vt-switch-tty2 PASS "Ctrl-] 2: $(shown tty2)"
    else
        check vt-switch-tty2 FAIL "Ctrl-] 2 did not show tty2's getty: $(shown tty2)"
    fi
    type_vt vt '\0351'
    if wait_screen vt "$pid" tty1-back 60 '^VT-42$' '^25 80$'; then
        check vt-switch-back PASS "Ctrl-] 1: tty1 as it was left: $(shown tty1-back)"
    else
        check vt-switch-back FAIL "Ctrl-] 1 did not bring tty1 back: $(shown tty1-back)"
    fi

    # poweroff typed on tty1 ends the daemon (its exit status is its log's:
    # a detached daemon is nobody's child here).
    t=$(now)
    type_vt vt 'poweroff\n'
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 90 ]; do
        s=$(serial vt)
        [ -n "$s" ] && printf '%s\n' "$s" > "$OUT/serial-1.txt"
        sleep 1; i=$((i + 1))
    done
    if wait_gone "$pid" 30 && grep -q "guest powered off" "$LOG"; then
        check poweroff-detached PASS "poweroff typed on tty1: the daemon ended $(since "$t") s later; its log: $(grep "guest powered off" "$LOG")"
    elif ! kill -0 "$pid" 2>/dev/null; then
        check poweroff-detached FAIL "the daemon ended without 'guest powered off': $(grep -a 'the guest stopped' "$LOG" | head -n 1) $(tail -n 3 "$LOG" | tr '\n' '|')"
    else
        check poweroff-detached FAIL "the daemon still runs $(since "$t") s after poweroff was typed: $(tail -n 3 "$OUT/serial-1.txt" | tr '\n' '|')"
        kill -TERM "$pid"
        if wait_gone "$pid" 30; then
            check sigterm-stop PASS "SIGTERM ended it"
        else
            check sigterm-stop FAIL "SIGTERM did not end it"
            kill -KILL "$pid"
        fi
    fi
    sleep 1
    left=$(ls "$RUNDIR" 2>/dev/null | grep -v '\.log$' | tr '\n' ' ')
    if ! kill -0 "$pid" 2>/dev/null && [ -z "$left" ] && [ ! -e "$PIDFILE" ]; then
        check daemon-files-removed PASS "daemon gone; $RUNDIR holds only its log"
    else
        check daemon-files-removed FAIL "alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no); left: $left $(ls $PIDFILE 2>/dev/null)"
    fi
    echo "vt-console: run 1's daemon log $LOG:"
    # Why it stopped first (a nested-setup triple fault is told apart by the
    # harness from this line), then the end of the log.
    grep -a -E 'the guest stopped|colinux-daemon:' "$LOG" | head -n 5 | sed 's/^/daemon| /'
    sed 's/^/daemon| /' "$LOG" | tail -n 20

    # --- run 2: cocon=100x30, in the foreground (a child: its exit status) ---
    PIDFILE2=/tmp/vt2.pid
    t0=$(now)
    colinux-daemon --foreground --name vt2 -p "$PIDFILE2" @"$CONF" cocon=100x30 > "$OUT/daemon-2.log" 2>&1 &
    pid2=$!
    i=0
    while [ ! -S "$RUNDIR/vt2.sock" ] && kill -0 "$pid2" 2>/dev/null && [ "$i" -lt 240 ]; do
        sleep 0.5; i=$((i + 1))
    done
    if [ -S "$RUNDIR/vt2.sock" ] && kill -0 "$pid2" 2>/dev/null; then
        check cocon-started PASS "pid $pid2 with cocon=100x30, socket $RUNDIR/vt2.sock after $(since "$t0") s"
    else
        check cocon-started FAIL "no $RUNDIR/vt2.sock: $(tail -n 3 "$OUT/daemon-2.log" | tr '\n' '|')"
    fi
    if wait_screen vt2 "$pid2" cocon-login 540 'login: *$'; then
        r=$(rows cocon-login) w=$(widest cocon-login)
        if [ "$r" = 30 ] && [ "$w" -le 100 ]; then
            check cocon-screen-rows PASS "--screen: 30 lines, the widest $w characters; $(shown cocon-login)"
        else
            check cocon-screen-rows FAIL "--screen: $r lines (want 30), the widest $w characters (at most 100)"
        fi
    else
        check cocon-screen-rows FAIL "no login: on --screen after $(since "$t0") s: $(shown cocon-login)"
    fi
    login_root vt2 "$pid2" cocon-root-login
    type_vt vt2 'stty size\n'
    if wait_screen vt2 "$pid2" cocon-stty-size 60 '^30 100$'; then
        check cocon-stty-size PASS "stty size on tty1 with cocon=100x30: 30 100"
    else
        check cocon-stty-size FAIL "no '30 100' on the screen: $(shown cocon-stty-size)"
    fi
    t=$(now)
    type_vt vt2 'poweroff\n'
    if wait_gone "$pid2" 120; then
        wait "$pid2"
        rc=$?
        check_eq cocon-poweroff-exit 0 "$rc"
    else
        check cocon-poweroff-exit FAIL "the daemon still runs $(since "$t") s after poweroff was typed"
        kill -TERM "$pid2"
        if wait_gone "$pid2" 30; then
            wait "$pid2"
            check cocon-sigterm-stop PASS "SIGTERM ended it (exit $?)"
        else
            check cocon-sigterm-stop FAIL "SIGTERM did not end it"
            kill -KILL "$pid2"
        fi
    fi
    echo "vt-console: run 2's output $OUT/daemon-2.log:"
    grep -a -E 'the guest stopped|colinux-daemon:' "$OUT/daemon-2.log" | head -n 5 | sed 's/^/daemon2| /'
    grep -v '^\[' "$OUT/daemon-2.log" | sed 's/^/daemon2| /' | tail -n 20
    ;;
esac
exit 0
