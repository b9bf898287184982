# net-lib: helpers for the net-* guest checks (sourced by them, after the agent
# defined arg/check/check_eq). Not a scenario of its own.

# nic_by_mac MAC: print the interface that has this MAC.
nic_by_mac() {
    for n in /sys/class/net/*; do
        [ "$(cat "$n/address" 2>/dev/null)" = "$1" ] && { echo "${n##*/}"; return 0; }
    done
    return 1
}

# need_nic ASSERTION MAC: the NIC with MAC, reported as an assertion; sets NIC.
need_nic() {
    NIC=$(nic_by_mac "$2")
    if [ -n "$NIC" ]; then
        ip link set "$NIC" up
        check "$1" PASS "$NIC mac=$2"
    else
        check "$1" FAIL "no interface with mac $2 ($(cat /sys/class/net/*/address | tr '\n' ' '))"
        return 1
    fi
}

# dhcp IFACE: take a lease with udhcpc; sets LEASE_IP LEASE_MASK LEASE_ROUTER LEASE_DNS.
dhcp() {
    cat > /tmp/udhcpc.sh <<'EOF'
#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "LEASE_IP=$ip LEASE_MASK=${mask:-} LEASE_ROUTER=${router%% *} LEASE_DNS=${dns%% *}" > "/tmp/lease.$interface" ;;
esac
EOF
    chmod +x /tmp/udhcpc.sh
    LEASE_IP=""; LEASE_MASK=""; LEASE_ROUTER=""; LEASE_DNS=""
    rm -f "/tmp/lease.$1"
    ip link set "$1" up
    udhcpc -f -q -n -t 10 -T 2 -i "$1" -s /tmp/udhcpc.sh > "/tmp/udhcpc.$1.log" 2>&1
    [ -f "/tmp/lease.$1" ] && . "/tmp/lease.$1"
    [ -n "$LEASE_IP" ]
}

# fetch_check ASSERTION URL SHA256: wget URL and compare its SHA-256.
# (busybox 1.35 wget crashes with -T, so the deadline comes from timeout.)
fetch_check() {
    rm -f /tmp/fetch
    if timeout 120 wget -q -O /tmp/fetch "$2"; then
        got=$(sha256sum /tmp/fetch | cut -d' ' -f1)
        if [ "$got" = "$3" ]; then
            check "$1" PASS "$2 $(wc -c < /tmp/fetch) bytes sha256=$got"
        else
            check "$1" FAIL "$2 sha256=$got expected=$3"
        fi
    else
        check "$1" FAIL "wget $2 failed"
    fi
    rm -f /tmp/fetch
}

# ping_check ASSERTION ADDR: three echo replies from ADDR.
ping_check() {
    out=$(ping -c 3 -W 5 "$2" 2>&1)
    got=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
    if [ "${got:-0}" -ge 1 ]; then check "$1" PASS "$2 $got/3 replies"; else check "$1" FAIL "$2: $(echo "$out" | tail -1)"; fi
}

# net_mark WORD...: a console line the host scenario script waits for.
net_mark() {
    echo "COLINUX-NET $*"
}
