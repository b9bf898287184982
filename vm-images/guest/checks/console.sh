# console: the guest side of the daemon's everyday-use scenario. Its ttyS1
# (ttys0=pty on the host) says a token line every second for two minutes, so
# the host sees it whenever it opens the pty; the agent then gives its shell to
# the console (colinux.shell=1), which the host drives with colinux-console.
# Kernel-line input: colinux.token=WORD
token=$(arg colinux.token)
uart=$(sed -n 's/^1: uart:\([^ ]*\) port:\([0-9A-Fa-f]*\) irq:\([0-9]*\).*/\1 \2 \3/p' /proc/tty/driver/serial 2>/dev/null)
# (the irq column is Linux's number for ISA IRQ 3, routed through ACPI)
case "$uart" in
16550A\ 000002F8\ *) check ttys1-uart PASS "ttyS1: $uart" ;;
*) check ttys1-uart FAIL "ttyS1: '${uart:-none}' ($(grep '^1:' /proc/tty/driver/serial 2>/dev/null))" ;;
esac
( i=0; while [ "$i" -lt 120 ]; do echo "COLINUX-TTYS1 $token boot-uptime $(cut -d' ' -f1 /proc/uptime)"; sleep 1; i=$((i + 1)); done > /dev/ttyS1 2>/dev/null ) &
