# bench-cofs: the guest side of `cargo xtask bench cofs`. cofs0 is a scratch
# share (a tmpfs directory in the host VM, the same one for every monitor),
# mounted with `mount -t virtiofs cofs0 /mnt/c`; the guest measures it with
# /bin/fs-bench (CLOCK_MONOTONIC): sequential write (1 MiB writes, then fsync)
# and read of colinux.seq_mib MiB in one file, then create+close, stat and
# unlink of colinux.files empty files in one directory. The guest's caches are
# dropped before the read and the stats, so their answers come from the host.
# One line per test:
#   COLINUX-BENCH mode=M bytes=N ops=N secs=S mibps=X opsps=Y
# A benchmark, not a test: the only assertion is that every measurement ran.
C=/mnt/c
seq=$(arg colinux.seq_mib); seq=${seq:-128}
files=$(arg colinux.files); files=${files:-2000}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

n=0
mkdir -p "$C"
if ! out=$(mount -t virtiofs cofs0 "$C" 2>&1); then
    echo "COLINUX-BENCH mode=mount error=$(echo "$out" | tr ' ' '_' | cut -c1-200)"
else
    rm -rf "$C/seq.bin" "$C/meta"
    mkdir "$C/meta"
    for t in "seq-write $C/seq.bin $seq" "seq-read $C/seq.bin $seq" \
             "create $C/meta $files" "stat $C/meta $files" "unlink $C/meta $files"; do
        set -- $t
        case "$1" in seq-read | stat) drop_caches ;; esac
        if out=$(fs-bench "$@" 2>&1); then
            echo "COLINUX-BENCH $out"
            n=$((n + 1))
        else
            echo "COLINUX-BENCH mode=$1 error=$(echo "$out" | tr ' ' '_' | cut -c1-200)"
        fi
    done
    rm -rf "$C/seq.bin" "$C/meta"
    umount "$C"
fi
check_eq bench-ran 5 "$n"
# The host reads the monitor's memory now, with the share work behind it.
echo "COLINUX-BENCH-SAMPLE"
sleep 2
