# net-bridged: eth0 bridged onto the host VM's veth end "lanbr", whose peer
# lives in a network namespace playing the LAN (198.51.100.1/24 with busybox
# udhcpd and httpd). The guest takes a lease from the LAN's DHCP server (pool
# 198.51.100.100-150, router 198.51.100.1), pings the LAN host and fetches a file
# from it with its SHA-256 checked. The host asserts the lease was recorded for
# the guest's MAC (lease-recorded).
# Kernel-line inputs: colinux.sha=SHA-256 of /work/payload.bin
. /etc/colinux/checks/net-lib.sh
if need_nic nic 00:ff:c0:11:00:03; then
    dhcp "$NIC"
    last=${LEASE_IP##*.}
    case "$LEASE_IP" in
    198.51.100.*) [ "$last" -ge 100 ] && [ "$last" -le 150 ] && ok=yes || ok=no ;;
    *) ok=no ;;
    esac
    if [ "$ok" = yes ]; then check dhcp-lease PASS "$LEASE_IP/$LEASE_MASK from the LAN"; else check dhcp-lease FAIL "lease '${LEASE_IP}' ($(tail -3 /tmp/udhcpc.$NIC.log | tr '\n' ' '))"; fi
    check_eq dhcp-router 198.51.100.1 "$LEASE_ROUTER"
    ping_check ping-lan 198.51.100.1
    fetch_check http-fetch http://198.51.100.1:8080/payload.bin "$(arg colinux.sha)"
fi
