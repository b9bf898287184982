#!/bin/sh
# intx host side. setup: busybox httpd serves /work on the host VM's loopback
# 127.0.0.1:8080 (the guest fetches payload.bin as 10.0.2.2:8080 through slirp).
. /etc/colinux/host-lib.sh
case "$1" in
setup)
    serve_work 127.0.0.1:8080
    ;;
during|check) ;;
esac
exit 0
