# cobd-crash: the guest side of the crash-consistency scenario. cobd0 is an
# ext4 file system (made by the host script, replayed and checked by it after
# every kill); this check mounts it and writes records until the host kills
# the monitor with SIGKILL. A record K is:
#   1. /mnt/crash/R/fK: 1..8 random 4 KiB blocks, fsync'ed (dd conv=fsync),
#      then its directory fsync'ed;
#   2. "seq K sha S" appended to /mnt/crash/log, fsync'ed;
#   3. /mnt/crash/state replaced atomically (write state.tmp "version K", body,
#      "sha <sha256 of body>", fsync, rename over state, fsync the directory);
# and only after all three the line
#   COLINUX-CRASH durable run=R seq=K file=fK sha=S end
# The host checks every such line it received: fK present with sha S, the log
# holding "seq K sha S", state self-consistent with version >= K.
# R is a fresh token per boot; earlier runs' files are removed first.
# Kernel-line inputs: colinux.crash_max=N records at most (then "idle").
mkdir -p /mnt
if ! mount -t ext4 /dev/cobd0 /mnt; then
    check mount FAIL "mount -t ext4 /dev/cobd0: $(dmesg | tail -n 3 | tr '\n' ' ')"
    return 0 2>/dev/null || exit 0
fi
check mount PASS "/dev/cobd0 ext4 read-write"
run=$(cut -c1-8 /proc/sys/kernel/random/uuid)
rm -rf /mnt/crash
mkdir -p "/mnt/crash/$run"
sync
max=$(arg colinux.crash_max)
echo "COLINUX-CRASH start run=$run"
k=1
while [ "$k" -le "${max:-2000}" ]; do
    f="/mnt/crash/$run/f$k"
    dd if=/dev/urandom of="$f" bs=4096 count=$((1 + RANDOM % 8)) conv=fsync 2>/dev/null || break
    sync "/mnt/crash/$run"
    sha=$(sha256sum "$f" | cut -d' ' -f1)
    echo "seq $k sha $sha" >> /mnt/crash/log
    sync /mnt/crash/log
    head -c 3000 /dev/urandom | od -An -tx1 > /tmp/body
    { echo "version $k"; cat /tmp/body; echo "sha $(sha256sum /tmp/body | cut -d' ' -f1)"; } > /mnt/crash/state.tmp
    sync /mnt/crash/state.tmp
    mv /mnt/crash/state.tmp /mnt/crash/state
    sync /mnt/crash
    echo "COLINUX-CRASH durable run=$run seq=$k file=f$k sha=$sha end"
    k=$((k + 1))
done
# Not killed yet: say so (the host reports the repetition as not mid-stream).
echo "COLINUX-CRASH idle after $((k - 1)) records"
umount /mnt
