# boot: init reached; memory, vCPU count and kernel command line as configured.
# Kernel-line inputs: colinux.mem=MiB colinux.cpus=N colinux.token=WORD
# Also, for `bench boot`, where the guest's own time went (guest clock, s):
#   COLINUX-BOOTTIME run_init_s=S ready_s=S
# run_init_s: the kernel starting /init (its log's "Run /init"); ready_s: the
# agent's READY. With initcall_debug on the kernel line, the slowest
# initcalls too: COLINUX-INITCALL usecs=N fn=NAME (15 of them).
check init PASS "pid=$$ uptime=$(cut -d' ' -f1 /proc/uptime)"
mem=$(arg colinux.mem)
total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
# The kernel keeps some RAM for itself: MemTotal must lie in (mem/2, mem].
if [ -n "$mem" ] && [ "$total_kb" -le $((mem * 1024)) ] && [ "$total_kb" -gt $((mem * 512)) ]; then
    check mem PASS "MemTotal=${total_kb}kB configured=${mem}MiB"
else
    check mem FAIL "MemTotal=${total_kb}kB configured=${mem:-unset}MiB"
fi
check_eq cpus "$(arg colinux.cpus)" "$(grep -c '^processor' /proc/cpuinfo)"
token=$(arg colinux.token)
case " $CMDLINE " in
*" colinux.token=$token "*) [ -n "$token" ] && check cmdline PASS "token=$token" || check cmdline FAIL "no colinux.token" ;;
*) check cmdline FAIL "$CMDLINE" ;;
esac
run_init=$(dmesg 2>/dev/null | sed -n 's/^\[ *\([0-9.]*\)\] Run .* as init process.*/\1/p' | head -n 1)
echo "COLINUX-BOOTTIME run_init_s=${run_init:-unknown} ready_s=${READY_UPTIME:-unknown}"
case " $CMDLINE " in
*" initcall_debug "*)
    dmesg | sed -n 's/.*initcall \([^ ]*\) returned .* after \([0-9]*\) usecs.*/\2 \1/p' |
        sort -rn | head -n 15 | while read -r us fn; do echo "COLINUX-INITCALL usecs=$us fn=$fn"; done
    ;;
esac
