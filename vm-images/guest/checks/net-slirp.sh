# net-slirp: eth0 on slirp (user-mode NAT). DHCP gives 10.0.2.15 with router
# 10.0.2.2 and DNS 10.0.2.3; a file the host VM serves on its loopback
# (127.0.0.1:8080) is fetched through the gateway 10.0.2.2 and its SHA-256
# checked; a host->guest TCP redirection (host 127.0.0.1:17777 -> guest 7777)
# carries an echo round trip (the host side asserts redirect-echo); the second
# port of the range (17778 -> 7778) carries the host's verdict back.
# Kernel-line inputs: colinux.sha=SHA-256 of /work/payload.bin
. /etc/colinux/checks/net-lib.sh
if need_nic nic 00:ff:c0:11:00:01; then
    dhcp "$NIC"
    check_eq dhcp-address 10.0.2.15 "$LEASE_IP"
    check_eq dhcp-router 10.0.2.2 "$LEASE_ROUTER"
    check_eq dhcp-dns 10.0.2.3 "$LEASE_DNS"
    fetch_check http-fetch http://10.0.2.2:8080/payload.bin "$(arg colinux.sha)"
    # Echo one connection on 7777; then the host tells on 7778 (the second port
    # of the redirection's range) whether the echo came back, so the guest does
    # not end the VM while the echo is still in flight.
    timeout 150 nc -l -p 7777 -e cat &
    echo_pid=$!
    timeout 150 nc -l -p 7778 -e sh -c 'cat > /tmp/verdict' &
    verdict_pid=$!
    sleep 1
    net_mark LISTEN 7777
    if wait $echo_pid; then check redirect-served PASS "one connection echoed on :7777"; else check redirect-served FAIL "nc -l -p 7777 ended $?"; fi
    wait $verdict_pid
    verdict=$(cat /tmp/verdict 2>/dev/null)
    case "$verdict" in
    echo-ok*) check redirect-range PASS "host port 17778 -> :7778 said: $verdict" ;;
    *) check redirect-range FAIL "verdict on :7778: '${verdict}'" ;;
    esac
fi
