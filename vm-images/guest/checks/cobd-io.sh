# cobd-io: cobd0 is a read-only random image, cobd1 an empty image.
# Kernel-line inputs: colinux.sha0=SHA256 of cobd0, colinux.size0=bytes,
# colinux.seed=S colinux.blocks=N colinux.stride=K (the write pattern, below).
# Pattern (the harness recomputes it in Rust, harness/src/checks.rs): for
# i in 0..N-1, block b=(i*K+S) mod (size1/4096) of cobd1 is filled with the line
# "cobd-io seed=S block=b\n" repeated and cut to 4096 bytes; all else stays zero.
size0=$(blockdev --getsize64 /dev/cobd0 2>/dev/null)
check_eq cobd0-size "$(arg colinux.size0)" "$size0"
check_eq cobd0-sha256 "$(arg colinux.sha0)" "$(sha256sum /dev/cobd0 | cut -d' ' -f1)"
if dd if=/dev/zero of=/dev/cobd0 bs=4096 count=1 conv=fsync 2>/tmp/dd0.err; then
    check cobd0-write-refused FAIL "write to read-only cobd0 succeeded"
else
    check cobd0-write-refused PASS "$(tail -n1 /tmp/dd0.err)"
fi
echo 3 > /proc/sys/vm/drop_caches
check_eq cobd0-sha256-after "$(arg colinux.sha0)" "$(sha256sum /dev/cobd0 | cut -d' ' -f1)"
seed=$(arg colinux.seed); n=$(arg colinux.blocks); k=$(arg colinux.stride)
nblk=$(( $(blockdev --getsize64 /dev/cobd1) / 4096 ))
i=0; ok=0
while [ $i -lt "$n" ]; do
    b=$(( (i * k + seed) % nblk ))
    yes "cobd-io seed=$seed block=$b" | head -c 4096 > /tmp/blk
    dd if=/tmp/blk of=/dev/cobd1 bs=4096 seek=$b count=1 conv=notrunc 2>/dev/null && ok=$((ok + 1))
    i=$((i + 1))
done
sync; blockdev --flushbufs /dev/cobd1
check_eq cobd1-writes "$n" "$ok"
