# rootfs: root=/dev/cobd0 read-write from rootfs.ext4. First boot writes a
# marker file, the second boot of the same image reads it back.
# Kernel-line input: colinux.token=WORD
dev=$(awk '$2 == "/" {print $1}' /proc/mounts | tail -n1)
opts=$(awk '$2 == "/" {print $4}' /proc/mounts | tail -n1)
check_eq root-device /dev/cobd0 "$dev"
case "$opts" in rw*) check root-rw PASS "$opts" ;; *) check root-rw FAIL "$opts" ;; esac
token=$(arg colinux.token)
if [ -f /var/colinux-marker ]; then
    check_eq readback "written-by-boot-1 $token" "$(cat /var/colinux-marker)"
else
    mkdir -p /var && echo "written-by-boot-1 $token" > /var/colinux-marker && sync \
        && check write PASS /var/colinux-marker || check write FAIL "cannot write /var/colinux-marker"
fi
