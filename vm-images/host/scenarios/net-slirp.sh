#!/bin/sh
# net-slirp host side. setup: busybox httpd serves /work on the host VM's
# loopback 127.0.0.1:8080 (the guest reaches it as 10.0.2.2:8080 through slirp).
# during: once the guest prints "COLINUX-NET LISTEN 7777", connect to the
# redirected port 127.0.0.1:17777 and expect our token echoed back, then send
# the verdict to 127.0.0.1:17778 (second port of the range) for the guest.
. /etc/colinux/host-lib.sh

case "$1" in
setup)
    serve_work 127.0.0.1:8080
    ;;
during)
    if ! wait_guest "COLINUX-NET LISTEN 7777" 170; then
        check redirect-echo FAIL "the guest never listened on 7777"
        exit 0
    fi
    token="colinux-redirect-$(cut -d' ' -f1 /proc/uptime)"
    got=""
    i=0
    while [ "$i" -lt 30 ]; do
        got=$(echo "$token" | timeout 10 nc 127.0.0.1 17777 2>/dev/null)
        [ "$got" = "$token" ] && break
        sleep 1; i=$((i + 1))
    done
    if [ "$got" = "$token" ]; then
        check redirect-echo PASS "127.0.0.1:17777 -> guest:7777 echoed $token"
        verdict="echo-ok $token"
    else
        check redirect-echo FAIL "no echo through 127.0.0.1:17777 (last answer: '$got')"
        verdict="echo-bad"
    fi
    # Tell the guest through the second redirected port; it waits for this.
    i=0
    while [ "$i" -lt 20 ]; do
        echo "$verdict" | timeout 10 nc 127.0.0.1 17778 && break
        sleep 1; i=$((i + 1))
    done
    ;;
check) ;;
esac
exit 0
