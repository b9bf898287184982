# cofs: host folders as virtio-fs (tag cofsN): cofs0 is read-write, cofs1
# read-only (`cofs1=DIR,ro`). Mounted with `mount -t virtiofs cofsN DIR`.
# What the host script (vm-images/host/scenarios/cofs.sh) put there first:
#   cofs0: big.bin (random, SHA-256 colinux.big on the kernel line),
#          host-grows ("v1"), escape -> /work/outside (absolute symlink),
#          rel-escape -> ../outside, up -> ../../../../../.. (relative);
#   cofs1: ro.bin (random, SHA-256 colinux.rosha), hello.txt, dir/;
#   outside both: /work/outside/secret, a line starting COFS-SECRET.
# The guest works on cofs0 (create, write, append, rename, hard link,
# symlink, unlink, mkdir, rmdir, chmod), reads big.bin by mmap, tries to get
# out of the share, is refused every change on cofs1, and sees what the host
# writes while it runs (host `during`: after the guest made guest-waiting it
# writes from-host and grows host-grows). The host's `check` phase verifies
# the guest's work on the host side. The scenario boots twice (the inner
# QEMU's virtiofsd is started anew for each boot): this runs twice.
C=/mnt/c
RO=/mnt/ro
# Guest-made content whose SHA-256 both sides compute the same way.
GUEST_DATA_LINE="cofs guest data"
GUEST_DATA_BYTES=3145728

# mount_share ASSERTION TAG DIR
mount_share() {
    mkdir -p "$3"
    if out=$(mount -t virtiofs "$2" "$3" 2>&1); then
        check "$1" PASS "$(grep " $3 " /proc/mounts)"
    else
        check "$1" FAIL "mount -t virtiofs $2 $3: $out (virtio devices: $(cat /sys/bus/virtio/devices/*/device 2>/dev/null | tr '\n' ' '))"
        return 1
    fi
}

# refused ASSERTION CMD...: CMD must fail with EROFS or EPERM.
refused() {
    a="$1"; shift
    if out=$("$@" 2>&1); then
        check "$a" FAIL "'$*' succeeded on the read-only share"
    elif echo "$out" | grep -qE 'Read-only file system|Operation not permitted'; then
        check "$a" PASS "'$*': $out"
    else
        check "$a" FAIL "'$*' failed, but not with EROFS/EPERM: $out"
    fi
}

# no_secret ASSERTION CMD...: CMD's output must not hold the host's secret.
no_secret() {
    a="$1"; shift
    out=$("$@" 2>&1)
    rc=$?
    if echo "$out" | grep -q COFS-SECRET; then
        check "$a" FAIL "'$*' gave the host's secret: $out"
    else
        check "$a" PASS "'$*' rc=$rc: $(echo "$out" | head -c 200)"
    fi
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

mount_share mount-cofs0 cofs0 "$C"
mount_share mount-cofs1 cofs1 "$RO"
# The scenario boots twice on the same shares: what an earlier boot made goes.
rm -rf "$C/new.txt" "$C/written.bin" "$C/append.txt" "$C/after-rename" "$C/link-a" \
    "$C/link-b" "$C/sym" "$C/abs-sym" "$C/kept-dir" "$C/mode-file"
# host-grows as it is before the host knows we are here (read first: the
# host grows it as soon as guest-waiting appears).
HOST_GROWS_BEFORE=$(cat "$C/host-grows" 2>&1 | tr '\n' ' ' | sed 's/ $//')
# Tell the host we are here (it answers with from-host, see the end).
echo "guest $(cut -d' ' -f1 /proc/uptime)" > "$C/guest-waiting"

# --- the read-write share: every kind of change, checked after the guest's
# caches are dropped (so the answers come from the host).
echo hello > "$C/new.txt"
yes "$GUEST_DATA_LINE" | head -c "$GUEST_DATA_BYTES" > "$C/written.bin"
printf 'one\n' > "$C/append.txt"
printf 'two\n' >> "$C/append.txt"
echo moved > "$C/before-rename"
mv "$C/before-rename" "$C/after-rename"
echo linked > "$C/link-a"
ln "$C/link-a" "$C/link-b"
ln -s after-rename "$C/sym"
ln -s /etc/hostname "$C/abs-sym"
echo doomed > "$C/doomed"
rm "$C/doomed"
mkdir "$C/kept-dir" "$C/gone-dir"
echo inner > "$C/kept-dir/inner.txt"
rmdir "$C/gone-dir"
echo mode > "$C/mode-file"
chmod 640 "$C/mode-file"
chmod 750 "$C/kept-dir"
drop_caches

check_eq create "hello" "$(cat "$C/new.txt" 2>&1)"
check_eq write-sha256 "$(yes "$GUEST_DATA_LINE" | head -c "$GUEST_DATA_BYTES" | sha256sum | cut -d' ' -f1)" \
    "$(sha256sum "$C/written.bin" 2>&1 | cut -d' ' -f1)"
check_eq append "one two" "$(cat "$C/append.txt" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
if [ -e "$C/before-rename" ]; then
    check rename FAIL "before-rename still there after mv"
else
    check_eq rename moved "$(cat "$C/after-rename" 2>&1)"
fi
check_eq hardlink "2 2 same-inode linked" \
    "$(stat -c %h "$C/link-a") $(stat -c %h "$C/link-b") $([ "$(stat -c %i "$C/link-a")" = "$(stat -c %i "$C/link-b")" ] && echo same-inode) $(cat "$C/link-b" 2>&1)"
check_eq symlink "after-rename moved" "$(readlink "$C/sym") $(cat "$C/sym" 2>&1)"
if [ -e "$C/doomed" ] || ls "$C" | grep -qx doomed; then
    check unlink FAIL "doomed still listed: $(ls "$C" | tr '\n' ' ')"
else
    check unlink PASS "doomed gone"
fi
if [ -d "$C/kept-dir" ] && [ ! -e "$C/gone-dir" ]; then
    check_eq mkdir-rmdir inner "$(cat "$C/kept-dir/inner.txt" 2>&1)"
else
    check mkdir-rmdir FAIL "kept-dir dir=$([ -d "$C/kept-dir" ] && echo yes || echo no), gone-dir exists=$([ -e "$C/gone-dir" ] && echo yes || echo no)"
fi
check_eq chmod "640 750" "$(stat -c %a "$C/mode-file") $(stat -c %a "$C/kept-dir")"

# --- the big host file, read through a shared mapping (page faults), then
# by read(2).
check_eq big-mmap-sha256 "$(arg colinux.big)" "$(mmap-cat "$C/big.bin" | sha256sum | cut -d' ' -f1)"
drop_caches
check_eq big-read-sha256 "$(arg colinux.big)" "$(sha256sum "$C/big.bin" 2>&1 | cut -d' ' -f1)"

# --- getting out of the share. The guest's own /work/outside/secret (not
# the host's) is what an absolute symlink of the share must lead to.
mkdir -p /work/outside
echo "guest-side file" > /work/outside/secret
no_secret dotdot-file cat "$C/../secret"
check_eq dotdot-list "$(ls -a /mnt | tr '\n' ' ')" "$(ls -a "$C/.." 2>&1 | tr '\n' ' ')"
check_eq dotdot-root "$(stat -c %d:%i /mnt) $(stat -c %d:%i /mnt)" \
    "$(stat -c %d:%i "$C/..") $(stat -c %d:%i "$C/kept-dir/../..")"
check_eq dotdot-cd /mnt "$(cd "$C" && cd .. && pwd)"
check_eq symlink-abs-guest-side "/work/outside guest-side file" \
    "$(readlink "$C/escape") $(cat "$C/escape/secret" 2>&1)"
no_secret symlink-abs-no-secret cat "$C/escape/secret"
no_secret symlink-rel-no-secret cat "$C/rel-escape/secret"
check_eq symlink-up-guest-root "$(stat -c %d:%i /)" "$(stat -L -c %d:%i "$C/up" 2>&1)"
no_secret symlink-up-no-secret cat "$C/up/work/outside/secret"
# Writes through the links land in the guest, never in the host's
# /work/outside (the host's check phase lists it).
echo pwned > "$C/escape/pwned" 2>/dev/null
echo pwned > "$C/rel-escape/pwned" 2>/dev/null
check_eq symlink-write-guest-side pwned "$(cat /work/outside/pwned 2>&1)"

# --- the read-only share: reads work, every change is refused.
check_eq ro-read-sha256 "$(arg colinux.rosha)" "$(sha256sum "$RO/ro.bin" 2>&1 | cut -d' ' -f1)"
check_eq ro-read-text "read-only share" "$(cat "$RO/hello.txt" 2>&1)"
refused ro-touch touch "$RO/new-file"
refused ro-create sh -c "echo x > $RO/new-file2"
refused ro-append sh -c "echo x >> $RO/hello.txt"
refused ro-mkdir mkdir "$RO/new-dir"
refused ro-rm rm "$RO/hello.txt"
refused ro-rmdir rmdir "$RO/dir"
refused ro-rename mv "$RO/hello.txt" "$RO/renamed.txt"
refused ro-chmod chmod 600 "$RO/hello.txt"
refused ro-link ln "$RO/hello.txt" "$RO/hard"
refused ro-symlink ln -s hello.txt "$RO/soft"
drop_caches
check_eq ro-unchanged "read-only share 644 dir hello.txt ro.bin" \
    "$(cat "$RO/hello.txt" 2>&1) $(stat -c %a "$RO/hello.txt") $(ls "$RO" | tr '\n' ' ' | sed 's/ $//')"

# --- what the host writes while the guest runs.
i=0
while [ ! -e "$C/from-host" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
check_eq host-file-seen "written by the host during the run" "$(cat "$C/from-host" 2>&1)"
i=0
while [ "$(cat "$C/host-grows" 2>/dev/null | tr '\n' ' ')" != "v1 v2 " ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
check_eq host-change-seen "v1 -> v1 v2" "$HOST_GROWS_BEFORE -> $(cat "$C/host-grows" 2>&1 | tr '\n' ' ' | sed 's/ $//')"

# One line a boot: the host's check counts them (a boot that died early
# reports nothing, and this scenario boots twice).
echo "boot done at $(cut -d' ' -f1 /proc/uptime)" >> "$C/boots.done"
sync
umount "$C" && umount "$RO"
check_eq umount "" "$(grep virtiofs /proc/mounts)"
