#!/bin/sh
# distro host side: the user's view of a Debian system image.
# during: wait for the serial getty's "login:", log in over ssh through the
#   slirp redirection 127.0.0.1:2222 -> guest:22 with the harness's key and run
#   the guest checks (/work/guest-check.sh, from vm-images/guest/checks/distro.sh)
#   there, log in on the console as root (typed into the monitor's console
#   input) and run a command, then `systemctl poweroff` over ssh.
# check: the monitor exited 0 after the poweroff; the console shows no failed
#   unit and no device timeout.
. /etc/colinux/host-lib.sh

# The console as it came: a getty's "login: " has no newline.
LOG="$OUT/guest-$BOOT.raw"
KEY=/etc/colinux/distro-key
# guest_ssh CMD...: ssh to the guest as root through the redirection.
guest_ssh() {
    ssh -i "$KEY" -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o LogLevel=ERROR \
        root@127.0.0.1 "$@"
}
# wait_guest TEXT SECONDS: wait for TEXT in this boot's console log.
wait_guest() { wait_file "$LOG" "$1" "$2"; }
# type_console TEXT: what a user types on the console.
type_console() { printf '%s\n' "$1" > "$CONSOLE_INPUT"; }
up() { cut -d' ' -f1 /proc/uptime; }

case "$1" in
setup) ;;
during)
    t0=$(up)
    if wait_guest "login:" 540; then
        check getty-prompt PASS "serial getty's login prompt $(awk -v a="$t0" -v b="$(up)" 'BEGIN {printf "%.1f", b - a}') s after the monitor started"
    else
        check getty-prompt FAIL "no login: on the console"
    fi
    i=0; said=""
    while [ "$i" -lt 24 ]; do
        said=$(guest_ssh 'echo "ssh-ok $(hostname) $(id -un)"' 2>&1) && break
        sleep 5; i=$((i + 1))
    done
    case "$said" in
    ssh-ok*) check ssh-login PASS "127.0.0.1:2222 -> guest:22, key login: $said" ;;
    *) check ssh-login FAIL "no ssh login through 127.0.0.1:2222: $said" ;;
    esac
    guest_ssh 'sh -s' < /work/guest-check.sh 2>&1

    # The console: log in as root at the serial getty, run a command.
    type_console ""
    sleep 1
    type_console root
    # The shell's prompt has no newline (the console log is by lines): type
    # the command until its output shows, as a user at a slow login would.
    i=0; ran=no
    while [ "$i" -lt 12 ]; do
        sleep 5
        type_console 'echo COLINUX-TTY-$((6 * 7))'
        # (the typed line says $((6 * 7)); only the shell's answer says 42)
        if wait_guest "COLINUX-TTY-42" 5; then ran=yes; break; fi
        i=$((i + 1))
    done
    if [ "$ran" = yes ] && grep -q "root@.*echo COLINUX-TTY" "$LOG"; then
        check console-login PASS "root logged in at the serial getty; its shell ran a typed command"
    else
        check console-login FAIL "no shell output after typing root at login: (ran=$ran)"
    fi
    type_console exit

    guest_ssh 'systemctl poweroff' > /dev/null 2>&1
    if wait_guest "reboot: Power down" 120; then
        check poweroff PASS "systemctl poweroff over ssh: the kernel powered down"
    else
        check poweroff FAIL "no 'reboot: Power down' within 120 s of systemctl poweroff"
    fi
    ;;
check)
    rc=$(cat /tmp/rc 2>/dev/null)
    check_eq poweroff-exit 0 "$rc"
    bad=$(grep -E "Failed to start|Timed out waiting for device|Dependency failed|emergency mode" "$OUT/guest-1.log" | head -n3 | tr '\n' ';')
    if [ -z "$bad" ] && grep -q "reboot: Power down" "$OUT/guest-1.log"; then
        check console-clean PASS "no failed unit or device timeout on the console; the kernel powered down"
    else
        check console-clean FAIL "${bad:-no 'reboot: Power down' on the console}"
    fi
    ;;
esac
exit 0
