# boot: init reached; memory, vCPU count and kernel command line as configured.
# Kernel-line inputs: colinux.mem=MiB colinux.cpus=N colinux.token=WORD
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
