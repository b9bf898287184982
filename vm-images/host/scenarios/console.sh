#!/bin/sh
# console host side: the daemon as a user runs it every day.
# setup: the exec0 probe (/tmp/exec-probe.sh) that records its start and its
#   SIGTERM in /tmp/exec0.state.
# check (boots = 0, all of it here):
#   colinux-daemon -d --name cs -p /tmp/cs.pid @conf returns once the VM is up;
#   colinux-console -a cs: replay until the agent's shell is up, type a command
#   and read its answer (piped input, --detach-after), the escape Ctrl-] d
#   ends a console at once, a late console gets the earlier output replayed,
#   --list shows the daemon; the guest's ttyS1 line is read from the pty whose
#   path the daemon wrote to /tmp/cs.pid.ttys0; `reboot -f` typed in the guest
#   boots it again in the same daemon (same pid, a second READY); SIGTERM stops
#   the daemon, which stops exec0 and removes its socket and pid files.
#   The guest's own COLINUX-CHECK lines come from the console replay.
. /etc/colinux/host-lib.sh

RUNDIR=/run/colinux
PIDFILE=/tmp/cs.pid
# console_replay SECONDS: what a console attached now sees in SECONDS.
console_replay() { colinux-console -a cs --detach-after "$1" < /dev/null 2>/dev/null; }
# wait_replay TEXT SECONDS: until a console's replay holds TEXT.
wait_replay() {
    i=0
    while [ "$i" -lt "$2" ]; do
        console_replay 1 | grep -q "$1" && return 0
        i=$((i + 2)); sleep 1
    done
    return 1
}
count_replay() { console_replay 1 | grep -c "$1"; }

case "$1" in
setup)
    cat > /tmp/exec-probe.sh <<'PROBE'
#!/bin/sh
echo "started pid $$" > /tmp/exec0.state
trap 'echo "stopped by SIGTERM" >> /tmp/exec0.state; exit 0' TERM
while :; do sleep 1; done
PROBE
    chmod 755 /tmp/exec-probe.sh
    ;;
check)
    t0=$(cut -d' ' -f1 /proc/uptime)
    out=$(timeout 120 colinux-daemon -d --name cs -p "$PIDFILE" --on-reboot=restart @"$CONF" 2>&1)
    rc=$?
    pid=$(cat "$PIDFILE" 2>/dev/null)
    if [ "$rc" = 0 ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ -S "$RUNDIR/$pid.sock" ]; then
        check daemon-detached PASS "pid $pid, socket $RUNDIR/$pid.sock, -d returned after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN {printf "%.1f", b - a}') s"
    else
        check daemon-detached FAIL "exit $rc, pid '${pid}': $out"
        exit 0
    fi
    LOG="$RUNDIR/$pid.log"

    # A console by name: the hint, then the shell once the agent gives it.
    hint=$(colinux-console -a cs --detach-after 1 < /dev/null 2>&1 >/dev/null)
    case "$hint" in
    *"Ctrl-] then d"*) check console-hint PASS "$hint" ;;
    *) check console-hint FAIL "'$hint'" ;;
    esac
    if wait_replay "COLINUX-AGENT shell" 120; then
        answer=$(printf 'echo COLINUX-CON-$((6 * 7))\n' | colinux-console -a cs --detach-after 6 2>/dev/null)
        if echo "$answer" | grep -q "^COLINUX-CON-42"; then
            check console-command PASS "typed 'echo COLINUX-CON-\$((6 * 7))', read COLINUX-CON-42"
        else
            check console-command FAIL "no answer: $(echo "$answer" | tail -n 3 | tr '\r\n' '  ')"
        fi
    else
        check console-command FAIL "the agent's shell never came (console: $(console_replay 1 | tail -n 2 | tr '\r\n' '  '))"
    fi
    # The escape in the input ends a console at once (no --detach-after).
    s=$(cut -d' ' -f1 /proc/uptime)
    printf '\035d' | timeout 20 colinux-console -a cs > /dev/null 2>&1
    erc=$?
    el=$(awk -v a="$s" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN {printf "%.1f", b - a}')
    if [ "$erc" = 0 ] && kill -0 "$pid" 2>/dev/null; then
        check console-escape-detach PASS "Ctrl-] d: console exited 0 after ${el} s, daemon still running"
    else
        check console-escape-detach FAIL "console exit $erc after ${el} s; daemon alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no)"
    fi
    if console_replay 2 | grep -q "^COLINUX-CON-42"; then
        check console-replay PASS "a later console got the earlier answer replayed"
    else
        check console-replay FAIL "no COLINUX-CON-42 in a later console's replay"
    fi
    list=$(colinux-console --list 2>&1)
    if echo "$list" | grep -q "^ *$pid .*cs"; then
        check console-list PASS "$(echo "$list" | grep "^ *$pid" | tr -s ' ')"
    else
        check console-list FAIL "$(echo "$list" | tr '\n' ';')"
    fi

    # The guest's ttyS1 through the pty the daemon made.
    pty=$(cat "$PIDFILE.ttys0" 2>/dev/null)
    if [ -n "$pty" ] && [ -c "$pty" ]; then
        line=$(timeout 10 head -n 3 < "$pty" | grep -a "COLINUX-TTYS1" | head -n 1 | tr -d '\r')
        case "$line" in
        *"console-c0n"*) check ttys1-pty PASS "$pty: $line" ;;
        *) check ttys1-pty FAIL "$pty gave '$line'" ;;
        esac
    else
        check ttys1-pty FAIL "no pty path in $PIDFILE.ttys0 ('$pty')"
    fi

    # Reboot in place: the same daemon boots the guest again.
    # (the ring keeps the first boot's lines: wait for a second READY and shell)
    printf 'reboot -f\n' | colinux-console -a cs --detach-after 2 > /dev/null 2>&1
    i=0
    while [ "$i" -lt 150 ] && kill -0 "$pid" 2>/dev/null && [ "$(count_replay 'COLINUX-AGENT shell')" -lt 2 ]; do
        sleep 1; i=$((i + 3))
    done
    if [ "$(count_replay 'COLINUX-AGENT READY')" -ge 2 ] && kill -0 "$pid" 2>/dev/null; then
        check reboot-in-place PASS "pid $pid served a second boot ($(grep -c 'booting again' "$LOG") reboot(s) in its log)"
    else
        check reboot-in-place FAIL "READY seen $(count_replay 'COLINUX-AGENT READY') times; daemon alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no); log: $(tail -n 3 "$LOG" | tr '\n' ';')"
    fi

    # The guest's own checks, from what the console kept.
    console_replay 2 | tr -d '\r' | grep "^COLINUX-CHECK" | sort -u

    if grep -q "^started" /tmp/exec0.state 2>/dev/null; then
        check exec0-ran PASS "$(head -n 1 /tmp/exec0.state)"
    else
        check exec0-ran FAIL "no /tmp/exec0.state"
    fi
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    sleep 1
    if grep -q "stopped by SIGTERM" /tmp/exec0.state 2>/dev/null; then
        check exec0-stopped PASS "$(tr '\n' ';' < /tmp/exec0.state)"
    else
        check exec0-stopped FAIL "$(tr '\n' ';' < /tmp/exec0.state 2>/dev/null)"
    fi
    left=$(ls "$RUNDIR" 2>/dev/null | grep -v '\.log$' | tr '\n' ' ')
    if ! kill -0 "$pid" 2>/dev/null && [ -z "$left" ] && [ ! -e "$PIDFILE" ] && [ ! -e "$PIDFILE.ttys0" ]; then
        check daemon-files-removed PASS "daemon gone; $RUNDIR holds only its log"
    else
        check daemon-files-removed FAIL "alive: $(kill -0 "$pid" 2>/dev/null && echo yes || echo no); left: $left $(ls $PIDFILE* 2>/dev/null)"
    fi
    echo "console: daemon log $LOG:"
    sed 's/^/daemon| /' "$LOG" | grep -v "^daemon| \[" | tail -n 30
    ;;
esac
exit 0
