# swap: cobd1 is a swap file; a small-memory guest fills a tmpfs past its RAM,
# so at least colinux.swap_min MiB go out to swap, and checks the data after.
# Kernel-line inputs: colinux.fill=MiB colinux.swap_min=MiB
fill=$(arg colinux.fill); min=$(arg colinux.swap_min)
mkswap /dev/cobd1 >/dev/null 2>&1 && swapon /dev/cobd1 \
    && check swapon PASS "$(awk 'NR==2 {print $1, $3 "kB"}' /proc/swaps)" \
    || check swapon FAIL "mkswap/swapon /dev/cobd1 failed"
mkdir -p /mnt/fill && mount -t tmpfs -o size=$((fill + 16))m fill /mnt/fill
# The agent (PID 1) must survive memory pressure; the filler may be OOM-killed.
echo -1000 > /proc/self/oom_score_adj
sum1=$( (echo 0 > /proc/self/oom_score_adj; dd if=/dev/urandom bs=1M count="$fill" 2>/dev/null | tee /mnt/fill/data | sha256sum | cut -d' ' -f1) )
[ -n "$sum1" ] || check fill FAIL "filling ${fill}MiB of tmpfs failed (OOM?): $(dmesg | grep -i -m1 'killed process')"
used=$(awk '/^SwapTotal:/ {t=$2} /^SwapFree:/ {f=$2} END {print int((t - f) / 1024)}' /proc/meminfo)
if [ "$used" -ge "$min" ]; then
    check swap-used PASS "${used}MiB in swap (min ${min}MiB) after filling ${fill}MiB, uptime $(cut -d' ' -f1 /proc/uptime)"
else
    check swap-used FAIL "${used}MiB in swap (min ${min}MiB)"
fi
check_eq data-sha256 "$sum1" "$(sha256sum /mnt/fill/data | cut -d' ' -f1)"
echo "COLINUX-AGENT swap data read back at uptime $(cut -d' ' -f1 /proc/uptime)"
umount /mnt/fill
swapoff /dev/cobd1 && check swapoff PASS "" || check swapoff FAIL ""
