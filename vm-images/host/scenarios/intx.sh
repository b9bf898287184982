#!/bin/sh
# intx host side. setup: busybox httpd serves /work on the host VM's loopback
# 127.0.0.1:8080 (the guest fetches payload.bin as 10.0.2.2:8080 through slirp).
. /etc/colinux/host-lib.sh
case "$1" in
setup)
    if httpd -p 127.0.0.1:8080 -h /work; then
        check host-httpd PASS "busybox httpd on 127.0.0.1:8080 serving /work"
    else
        check host-httpd FAIL "busybox httpd did not start"
    fi
    ;;
during|check) ;;
esac
exit 0
