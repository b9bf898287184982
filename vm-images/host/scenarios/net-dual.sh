#!/bin/sh
# net-dual host side. setup: a persistent TAP ctap1 with 192.0.2.1/24 and httpd
# on 192.0.2.1:8080 (the TAP path), plus httpd on the loopback 127.0.0.1:8081
# (only the slirp NIC can reach it, as 10.0.2.2:8081). Both serve /work.
. /etc/colinux/host-lib.sh
case "$1" in
setup)
    ok=yes
    ip tuntap add dev ctap1 mode tap || ok=no
    ip addr add 192.0.2.1/24 dev ctap1 || ok=no
    ip link set ctap1 up || ok=no
    httpd -p 192.0.2.1:8080 -h /work || ok=no
    httpd -p 127.0.0.1:8081 -h /work || ok=no
    if [ "$ok" = yes ]; then
        check host-setup PASS "ctap1 192.0.2.1/24 httpd :8080; loopback httpd :8081"
    else
        check host-setup FAIL "TAP or httpd set-up failed"
    fi
    ;;
esac
exit 0
