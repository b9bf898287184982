# net-tuntap: eth0 on a TAP device of the host VM (ctap0, 192.0.2.1/24 on the
# host side); static guest address 192.0.2.2/24. Ping both ways (the host side
# asserts host-ping), a file fetched from the host's httpd with its SHA-256
# (host->guest), and a random file sent to the host's nc listener whose SHA-256
# the host compares (guest->host, asserted by the host as upload-sha256).
# Kernel-line inputs: colinux.sha=SHA-256 of /work/payload.bin
. /etc/colinux/checks/net-lib.sh
if need_nic nic 00:ff:c0:11:00:02; then
    ip addr add 192.0.2.2/24 dev "$NIC"
    ping_check ping-host 192.0.2.1
    fetch_check http-fetch http://192.0.2.1:8080/payload.bin "$(arg colinux.sha)"
    dd if=/dev/urandom of=/tmp/up.bin bs=64k count=32 2>/dev/null
    net_mark UPLOAD-SHA "$(sha256sum /tmp/up.bin | cut -d' ' -f1)"
    sent=no
    i=0
    while [ "$i" -lt 10 ]; do
        if timeout 30 nc 192.0.2.1 9000 < /tmp/up.bin; then sent=yes; break; fi
        sleep 1; i=$((i + 1))
    done
    if [ "$sent" = yes ]; then check upload-sent PASS "$(wc -c < /tmp/up.bin) bytes to 192.0.2.1:9000"; else check upload-sent FAIL "nc 192.0.2.1 9000 never succeeded"; fi
    # The host pings us, then connects to :9001 to say it is done.
    timeout 90 nc -l -p 9001 -e cat > /dev/null &
    ncpid=$!
    sleep 1
    net_mark PING-ME
    if wait $ncpid; then check host-connect PASS "host reached 192.0.2.2:9001"; else check host-connect FAIL "no connection from the host on :9001"; fi
fi
