#!/bin/sh
# cofs host side (the guest check is vm-images/guest/checks/cofs.sh).
# setup: the shares of the conf, cofs0=/work/share and cofs1=/work/share-ro,ro:
#   share: big.bin (the harness's random work file, SHA-256 colinux.big on
#   the kernel line), host-grows ("v1"), and three links out of the share the
#   guest must resolve in its own namespace: escape -> /work/outside,
#   rel-escape -> ../outside, up -> ../../../../../..;
#   share-ro: ro.bin (SHA-256 colinux.rosha), hello.txt, dir/;
#   /work/outside/secret, outside both shares: "COFS-SECRET <random>".
# during (each of the two boots): clears what the last boot left, then once
#   the guest made share/guest-waiting, writes share/from-host and grows
#   share/host-grows (the guest waits for both).
# check (after the second boot): the guest's changes as the host sees them, the read-only share and
#   the outside directory unchanged, big.bin unchanged.
. /etc/colinux/host-lib.sh
S=/work/share
RO=/work/share-ro
OUT=/work/outside
GUEST_DATA_LINE="cofs guest data"
GUEST_DATA_BYTES=3145728

# tree_state DIR: one line per entry (path, type, mode, links, size, mtime,
# content SHA-256 or link target), sorted: equal output = unchanged tree.
tree_state() {
    find "$1" | sort | while IFS= read -r f; do
        if [ -L "$f" ]; then
            echo "$f link -> $(readlink "$f")"
        elif [ -f "$f" ]; then
            echo "$f file $(stat -c '%a %h %s %Y' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"
        else
            echo "$f $(stat -c '%F %a %Y' "$f")"
        fi
    done
}

# check_tree ASSERTION DIR BEFORE-FILE
check_tree() {
    now=$(tree_state "$2")
    if [ "$now" = "$(cat "$3")" ]; then
        check "$1" PASS "$(echo "$now" | wc -l) entries as before"
    else
        check "$1" FAIL "changed: $(echo "$now" | diff "$3" - | grep '^[-+]/' | tr '\n' ';')"
    fi
}

case "$1" in
setup)
    mkdir -p "$S" "$RO/dir" "$OUT"
    mv /work/big.bin "$S/big.bin"
    mv /work/ro.bin "$RO/ro.bin"
    printf 'read-only share\n' > "$RO/hello.txt"
    chmod 644 "$RO/hello.txt" "$RO/ro.bin"
    printf 'v1\n' > "$S/host-grows"
    echo "COFS-SECRET $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$OUT/secret"
    chmod 600 "$OUT/secret"
    ln -s /work/outside "$S/escape"
    ln -s ../outside "$S/rel-escape"
    ln -s ../../../../../.. "$S/up"
    tree_state "$RO" > /tmp/cofs-ro.before
    tree_state "$OUT" > /tmp/cofs-outside.before
    big=$(sha256sum < "$S/big.bin" | cut -d' ' -f1)
    if [ "$big" = "$(confarg colinux.big)" ] && [ -f "$RO/ro.bin" ] && [ -L "$S/escape" ]; then
        check host-share-setup PASS "$S (big.bin $big), $RO, $OUT/secret"
    else
        check host-share-setup FAIL "big.bin sha256=$big (conf $(confarg colinux.big)); $(ls -l "$S" "$RO" | tr '\n' ';')"
    fi
    ;;
during)
    # Each boot starts from no guest-waiting / from-host and host-grows "v1"
    # (the guest needs 10+ s to mount the share: this comes first).
    rm -f "$S/guest-waiting" "$S/from-host"
    printf 'v1\n' > "$S/host-grows"
    i=0
    while [ ! -e "$S/guest-waiting" ] && [ $i -lt $((${BOOT_TIMEOUT:-180} * 10)) ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ -e "$S/guest-waiting" ]; then
        printf 'written by the host during the run\n' > "$S/.from-host.tmp"
        mv "$S/.from-host.tmp" "$S/from-host"
        printf 'v2\n' >> "$S/host-grows"
        check host-during-write PASS "guest-waiting seen after $((i / 10))s ($(cat "$S/guest-waiting")); wrote from-host, grew host-grows"
    else
        check host-during-write FAIL "the guest never made $S/guest-waiting"
    fi
    ;;
check)
    check_eq host-written-sha256 \
        "$(yes "$GUEST_DATA_LINE" | head -c "$GUEST_DATA_BYTES" | sha256sum | cut -d' ' -f1)" \
        "$(sha256sum < "$S/written.bin" 2>&1 | cut -d' ' -f1)"
    check_eq host-create "hello 644 0:0" \
        "$(cat "$S/new.txt" 2>&1) $(stat -c '%a %u:%g' "$S/new.txt" 2>&1)"
    check_eq host-append "one two" "$(cat "$S/append.txt" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
    check_eq host-rename "absent moved" \
        "$([ -e "$S/before-rename" ] && echo present || echo absent) $(cat "$S/after-rename" 2>&1)"
    check_eq host-hardlink "2 same-inode linked" \
        "$(stat -c %h "$S/link-a" 2>&1) $([ "$(stat -c %i "$S/link-a")" = "$(stat -c %i "$S/link-b")" ] && echo same-inode) $(cat "$S/link-b" 2>&1)"
    check_eq host-symlinks "after-rename /etc/hostname" \
        "$([ -L "$S/sym" ] && readlink "$S/sym") $([ -L "$S/abs-sym" ] && readlink "$S/abs-sym")"
    check_eq host-unlink absent "$([ -e "$S/doomed" ] && echo present || echo absent)"
    check_eq host-dirs "kept-dir inner, gone-dir absent" \
        "$([ -d "$S/kept-dir" ] && echo kept-dir) $(cat "$S/kept-dir/inner.txt" 2>&1), gone-dir $([ -e "$S/gone-dir" ] && echo present || echo absent)"
    check_eq host-modes "640 750" "$(stat -c %a "$S/mode-file" 2>&1) $(stat -c %a "$S/kept-dir" 2>&1)"
    check_eq host-big-unchanged "$(confarg colinux.big)" "$(sha256sum < "$S/big.bin" | cut -d' ' -f1)"
    check_eq host-every-boot "${BOOTS:-1}" "$(wc -l < "$S/boots.done" 2>/dev/null | tr -d ' ')"
    check_eq host-guest-was-here yes "$([ -f "$S/guest-waiting" ] && echo yes || echo no)"
    check_tree host-ro-unchanged "$RO" /tmp/cofs-ro.before
    check_tree host-outside-unchanged "$OUT" /tmp/cofs-outside.before
    echo "cofs share after the run:"
    ls -la "$S" | sed 's/^/  /'
    ;;
esac
exit 0
