# intx: the kernel runs with pci=nomsi, so virtio-pci falls back to INTx
# (virtio's legacy ISR: the line stays up until the driver reads the ISR).
# cobd0 is a read-only random image, cobd1 an empty one, eth0 is on slirp.
# Kernel-line inputs: colinux.sha0=SHA-256 of cobd0, colinux.sha=SHA-256 of
# /work/payload.bin (served by the host script on 127.0.0.1:8080).
. /etc/colinux/checks/net-lib.sh
check_eq cobd0-sha256 "$(arg colinux.sha0)" "$(sha256sum /dev/cobd0 | cut -d' ' -f1)"
yes "intx block" | head -c 65536 > /tmp/intx.blk
dd if=/tmp/intx.blk of=/dev/cobd1 bs=4096 seek=16 conv=fsync,notrunc 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
blockdev --flushbufs /dev/cobd1
check_eq cobd1-readback "$(sha256sum < /tmp/intx.blk | cut -d' ' -f1)" \
    "$(dd if=/dev/cobd1 bs=4096 skip=16 count=16 2>/dev/null | sha256sum | cut -d' ' -f1)"
if need_nic nic 00:ff:c0:11:00:01; then
    dhcp "$NIC"
    check_eq dhcp-address 10.0.2.15 "$LEASE_IP"
    fetch_check http-fetch http://10.0.2.2:8080/payload.bin "$(arg colinux.sha)"
fi
# Every virtio interrupt line: an IO-APIC line (level, fasteoi) that counted
# interrupts; none of them PCI-MSI.
grep virtio /proc/interrupts | sed 's/^/COLINUX-IRQ /'
lines=$(grep -c 'virtio' /proc/interrupts)
msi=$(grep 'virtio' /proc/interrupts | grep -c 'MSI')
ioapic=$(grep 'virtio' /proc/interrupts | grep 'IO-APIC' | awk '{ n = 0; for (i = 2; i <= NF; i++) { if ($i ~ /^[0-9]+$/) n += $i; else break } if (n > 0) c++ } END { print c + 0 }')
if [ "$lines" -gt 0 ] && [ "$ioapic" = "$lines" ]; then
    check virtio-intx PASS "$ioapic virtio lines on the IO-APIC, all with interrupts: $(grep virtio /proc/interrupts | awk '{ printf "%s ", $0 }' | tr -s ' ')"
else
    check virtio-intx FAIL "$lines virtio lines, $ioapic IO-APIC with interrupts: $(grep virtio /proc/interrupts | tr -s ' ' | tr '\n' ';')"
fi
check_eq no-msi 0 "$msi"
