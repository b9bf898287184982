#!/bin/sh
# net-tuntap host side. setup: a persistent TAP ctap0 with 192.0.2.1/24 (the
# inner monitor attaches to it), busybox httpd on 192.0.2.1:8080 serving /work.
# during: receive the guest's upload on 192.0.2.1:9000, and ping the guest
# (192.0.2.2) once it says PING-ME. check: the upload's SHA-256 equals the one
# the guest printed.
. /etc/colinux/host-lib.sh

case "$1" in
setup)
    host_tap
    if httpd -p 192.0.2.1:8080 -h /work; then
        check host-setup-tap PASS "ctap0 192.0.2.1/24, httpd :8080"
    else
        check host-setup-tap FAIL "httpd on 192.0.2.1:8080 did not start"
    fi
    ;;
during)
    rm -f "$OUT/upload.bin"
    timeout 170 nc -l -p 9000 -e sh -c "cat > $OUT/upload.bin" &
    ncpid=$!
    if wait_guest "COLINUX-NET PING-ME" 170; then
        out=$(ping -c 3 -W 5 192.0.2.2 2>&1)
        got=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
        if [ "${got:-0}" -ge 1 ]; then check host-ping PASS "192.0.2.2 $got/3 replies"; else check host-ping FAIL "$(echo "$out" | tail -1)"; fi
    else
        check host-ping FAIL "the guest never reached PING-ME"
    fi
    i=0
    while [ "$i" -lt 20 ]; do
        [ "$(echo done | timeout 10 nc 192.0.2.2 9001 2>/dev/null)" = done ] && break
        sleep 1; i=$((i + 1))
    done
    kill "$ncpid" 2>/dev/null
    ;;
check)
    want=$(sed -n 's/.*COLINUX-NET UPLOAD-SHA \([0-9a-f]*\).*/\1/p' "$OUT/guest-1.log" | head -1)
    got=$(sha256sum "$OUT/upload.bin" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$want" ] && [ "$want" = "$got" ]; then
        check upload-sha256 PASS "$(wc -c < "$OUT/upload.bin") bytes sha256=$got"
    else
        check upload-sha256 FAIL "guest said ${want:-nothing}, host got ${got:-no file}"
    fi
    ;;
esac
exit 0
