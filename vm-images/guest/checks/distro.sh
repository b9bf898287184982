# distro: run over ssh (sh -s) inside a Debian system image booted from a
# seed-style conf, by the host script vm-images/host/scenarios/distro.sh.
# Prints COLINUX-CHECK lines like the agent's checks.
SCENARIO=distro
check() {
    a="$1"; r="$2"; shift 2
    echo "COLINUX-CHECK $SCENARIO $a $r $*"
}
check_eq() {
    if [ "$2" = "$3" ]; then check "$1" PASS "$3"; else check "$1" FAIL "expected=$2 got=$3"; fi
}
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }

state=$(timeout 240 systemctl is-system-running --wait 2>&1)
failed=$(systemctl --failed --plain --no-legend --no-pager 2>&1 | awk '{print $1}' | tr '\n' ' ')
check_eq system-running running "$state${failed:+ (failed: $failed)}"
if [ -z "$failed" ]; then check no-failed-units PASS none; else check no-failed-units FAIL "$failed"; fi

check_eq root-device /dev/cobd0 "$(findmnt -no SOURCE /)"
# systemd-fsck-root runs only on a read-only root (ConditionPathIsReadWrite=!/).
fsck="ran=$(systemctl show -p ConditionResult --value systemd-fsck-root.service) result=$(systemctl show -p Result --value systemd-fsck-root.service)"
if grep -qw ro /proc/cmdline && [ "$fsck" = "ran=yes result=success" ]; then
    check root-ro-first PASS "kernel line says ro; systemd-fsck-root ran: $fsck"
else
    check root-ro-first FAIL "cmdline: $(cat /proc/cmdline); systemd-fsck-root: $fsck"
fi
opts=$(findmnt -no OPTIONS /)
remount=$(systemctl show -p Result --value systemd-remount-fs.service)
case "$opts" in
rw,*) check root-remounted-rw PASS "$opts; systemd-remount-fs $remount" ;;
*) check root-remounted-rw FAIL "$opts; systemd-remount-fs $remount" ;;
esac

names=""
for c in cobd0 cobd1; do
    names="$names $c=$(readlink /dev/$c) ($(udevadm info -q symlink -n /dev/$c 2>/dev/null | tr ' \n' ',,'))"
done
if [ -L /dev/cobd0 ] && [ -L /dev/cobd1 ] && udevadm info -q symlink -n /dev/cobd1 | grep -qw cobd1; then
    check cobd-names PASS "$names"
else
    check cobd-names FAIL "$names"
fi

swapdev=$(readlink -f /dev/cobd1)
if swapon --show=NAME --noheadings | grep -qx "$swapdev"; then
    check swap PASS "$swapdev ($(systemctl is-active dev-cobd1.swap)) $(free -m | awk '/^Swap/ {print $2}') MiB"
else
    check swap FAIL "cobd1=$swapdev; swaps: $(swapon --show=NAME --noheadings | tr '\n' ' ')"
fi

ok=1; detail=""
for p in $(arg colinux.eth | tr ',' ' '); do
    n=${p%%@*}; mac=${p#*@}
    got=$(cat /sys/class/net/$n/address 2>/dev/null)
    detail="$detail $n=${got:-missing}"
    [ "$got" = "$mac" ] || ok=0
done
others=$(ls /sys/class/net | grep -v -e '^lo$' -e '^eth[0-9]' | tr '\n' ' ')
[ -n "$others" ] && ok=0 && detail="$detail others: $others"
if [ "$ok" = 1 ] && [ -n "$detail" ]; then check eth-names PASS "$detail"; else check eth-names FAIL "colinux.eth=$(arg colinux.eth):$detail"; fi

addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')
check_eq eth0-dhcp 10.0.2.15/24 "$addr"
if grep -q '^nameserver 10.0.2.3' /etc/resolv.conf; then
    check eth0-dns PASS "$(grep ^nameserver /etc/resolv.conf | tr '\n' ' ')"
else
    check eth0-dns FAIL "resolv.conf: $(tr '\n' ' ' < /etc/resolv.conf)"
fi
check_eq eth0-route "default via 10.0.2.2" "$(ip route show default | awk '{print $1, $2, $3}')"

rel=$(uname -r)
if [ -f "/lib/modules/$rel/modules.dep" ] && modprobe -n -q dummy; then
    check modules PASS "/lib/modules/$rel ($(find /lib/modules/$rel -name '*.ko*' | wc -l) modules)"
else
    check modules FAIL "/lib/modules/$rel: $(ls /lib/modules 2>&1)"
fi

model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
if [ -n "$model" ] && ! echo "$model" | grep -Eq '^[0-9a-f]+/[0-9a-f]+$'; then
    check cpu-brand PASS "$model"
else
    check cpu-brand FAIL "model name: '$model'"
fi
