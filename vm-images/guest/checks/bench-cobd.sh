# bench-cobd: the guest side of `cargo xtask bench cobd`. cobd0 is a scratch
# disk (a tmpfs file in the host VM, the same file for every monitor); the
# guest measures it with /bin/cobd-bench (O_DIRECT, CLOCK_MONOTONIC):
# sequential write and read of colinux.seq_mib MiB in 1 MiB requests, then
# colinux.rand_ops random 4 KiB reads and writes (QD1) within the first
# colinux.span_mib MiB. One line per test:
#   COLINUX-BENCH mode=M bytes=N ops=N secs=S mibps=X iops=Y
# A benchmark, not a test: the only assertion is that every measurement ran.
seq=$(arg colinux.seq_mib); span=$(arg colinux.span_mib); ops=$(arg colinux.rand_ops)
n=0
for t in "seq-write ${seq:-128}" "seq-read ${seq:-128}" "rand-read ${span:-128} ${ops:-4000}" "rand-write ${span:-128} ${ops:-4000}"; do
    set -- $t
    mode=$1; shift
    if out=$(cobd-bench "$mode" /dev/cobd0 "$@" 2>&1); then
        echo "COLINUX-BENCH $out"
        n=$((n + 1))
    else
        echo "COLINUX-BENCH mode=$mode error=$(echo "$out" | tr ' ' '_' | cut -c1-200)"
    fi
done
check_eq bench-ran 4 "$n"
# The host reads the monitor's memory now, with the disk work behind it.
echo "COLINUX-BENCH-SAMPLE"
sleep 2
