# coLinux initramfs library: the decisions of /init as functions that read
# only their arguments, $SYS (sysfs, default /sys) and $DEV (device directory,
# default /dev), so harness/tests/initramfs.rs can run them on a fake sysfs
# without a VM. Sourced by /init (vm-images/guest/init); busybox sh.

: "${SYS:=/sys}"
: "${DEV:=/dev}"

# kernel_words CMDLINE: the words the kernel itself reads (those before `--`).
kernel_words() {
    for w in $1; do
        [ "$w" = "--" ] && break
        echo "$w"
    done
}

# cmdline_arg NAME CMDLINE: the value of NAME=VALUE (the last one wins, as in
# the kernel); empty when absent.
cmdline_arg() {
    v=""
    for w in $(kernel_words "$2"); do
        case "$w" in "$1="*) v="${w#*=}" ;; esac
    done
    echo "$v"
}

# cmdline_flag NAME CMDLINE: success when the bare word NAME is present.
cmdline_flag() {
    for w in $(kernel_words "$2"); do
        [ "$w" = "$1" ] && return 0
    done
    return 1
}

# root_mode CMDLINE: "ro" or "rw". The kernel mounts the root read-only
# unless told `rw`; of `ro` and `rw` the last one wins.
root_mode() {
    m=ro
    for w in $(kernel_words "$1"); do
        case "$w" in ro) m=ro ;; rw) m=rw ;; esac
    done
    echo "$m"
}

# mount_options CMDLINE: the -o list for the root: the mode, then rootflags=.
mount_options() {
    o=$(root_mode "$1")
    f=$(cmdline_arg rootflags "$1")
    [ -n "$f" ] && o="$o,$f"
    echo "$o"
}

# cobd_disks: "cobdN vdX" for every virtio disk whose serial is cobdN.
cobd_disks() {
    for d in "$SYS"/block/vd*; do
        [ -r "$d/serial" ] || continue
        s=$(cat "$d/serial")
        case "$s" in
        cobd[0-9] | cobd[0-9][0-9]) echo "$s ${d##*/}" ;;
        esac
    done
}

# cobd_kernel_name cobdN: the kernel's name of that disk (vda...), or nothing.
cobd_kernel_name() {
    cobd_disks | while read -r s k; do
        [ "$s" = "$1" ] && echo "$k" && break
    done
}

# alias_pairs ALIASES: "name cobdN" per pair of colinux.alias=hda1:cobd0,...
# (names with a slash or dots are dropped: they must stay inside /dev).
alias_pairs() {
    for p in $(echo "$1" | tr ',' ' '); do
        name=${p%%:*}; target=${p#*:}
        case "$name" in "" | */* | .*) continue ;; esac
        case "$target" in cobd[0-9] | cobd[0-9][0-9]) echo "$name $target" ;; esac
    done
}

# resolve_root ROOT ALIASES: the device to mount for root=ROOT, or nothing
# (not there yet). Forms: /dev/cobdN, a classic alias (/dev/hda1 from
# colinux.alias), /dev/vdX[N] or any other /dev path, LABEL=, UUID=, PARTUUID=
# (through ${BLKID:-blkid}).
resolve_root() {
    case "$1" in
    LABEL=* | UUID=* | PARTUUID=* | PARTLABEL=*)
        ${BLKID:-blkid} -l -o device -t "$1" 2>/dev/null | head -n1
        return ;;
    /dev/*) name=${1#/dev/} ;;
    *) name=$1 ;;
    esac
    case "$name" in
    cobd[0-9] | cobd[0-9][0-9])
        k=$(cobd_kernel_name "$name")
        [ -n "$k" ] && echo "$DEV/$k"
        return 0 ;;
    esac
    t=$(alias_pairs "$2" | while read -r n c; do [ "$n" = "$name" ] && echo "$c" && break; done)
    if [ -n "$t" ]; then
        k=$(cobd_kernel_name "$t")
        [ -n "$k" ] && echo "$DEV/$k"
        return 0
    fi
    [ -b "$DEV/$name" ] && echo "$DEV/$name"
    # a partition or disk the kernel knows even where $DEV has no node yet
    [ -e "$SYS/class/block/$name" ] && [ ! -b "$DEV/$name" ] && echo "$DEV/$name"
    return 0
}

# cobd_links ALIASES: make $DEV/cobdN -> vdX and each alias -> vdX, as the
# udev rule below names them in the running system.
cobd_links() {
    cobd_disks | while read -r s k; do
        [ -e "$DEV/$s" ] || [ -L "$DEV/$s" ] || ln -s "$k" "$DEV/$s"
    done
    alias_pairs "$1" | while read -r n c; do
        k=$(cobd_kernel_name "$c")
        [ -n "$k" ] || continue
        [ -e "$DEV/$n" ] || [ -L "$DEV/$n" ] || ln -s "$k" "$DEV/$n"
    done
}

# udev_rules ALIASES NICS: the udev rules the running system gets (written to
# /run/udev/rules.d/, which survives switch_root): every cobd disk named
# /dev/cobdN and each classic alias, and each NIC of colinux.eth=ethN@MAC
# named ethN.
udev_rules() {
    echo "# made by the coLinux initramfs from the kernel command line"
    echo 'SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", KERNEL=="vd*", ATTR{serial}=="cobd[0-9]*", SYMLINK+="$attr{serial}"'
    alias_pairs "$1" | while read -r n c; do
        echo "SUBSYSTEM==\"block\", ENV{DEVTYPE}==\"disk\", KERNEL==\"vd*\", ATTR{serial}==\"$c\", SYMLINK+=\"$n\""
    done
    nic_pairs "$2" | while read -r n mac; do
        echo "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"$mac\", NAME=\"$n\""
    done
}

# nic_pairs NICS: "ethN mac" per entry of colinux.eth=eth0@MAC,... (lower case).
nic_pairs() {
    for p in $(echo "$1" | tr ',' ' '); do
        n=${p%%@*}; mac=${p#*@}
        case "$n" in eth[0-9] | eth[0-9][0-9]) ;; *) continue ;; esac
        echo "$n $(echo "$mac" | tr 'A-F' 'a-f')"
    done
}

# nic_by_mac MAC: the current name of the interface with that MAC.
nic_by_mac() {
    for n in "$SYS"/class/net/*; do
        [ -r "$n/address" ] || continue
        [ "$(cat "$n/address")" = "$1" ] && echo "${n##*/}" && return
    done
}

# nic_renames NICS: the renames that give every NIC its conf name, as lines
# "FROM TO". Two passes through temporary names (cltmpN), so a swap
# (eth0 <-> eth1) never collides with a name still taken.
nic_renames() {
    nic_pairs "$1" | while read -r n mac; do
        cur=$(nic_by_mac "$mac")
        [ -n "$cur" ] && [ "$cur" != "$n" ] && echo "$cur cltmp${n#eth} $n"
    done > "${TMPDIR:-/tmp}/nic-plan.$$"
    while read -r cur tmp n; do echo "$cur $tmp"; done < "${TMPDIR:-/tmp}/nic-plan.$$"
    while read -r cur tmp n; do echo "$tmp $n"; done < "${TMPDIR:-/tmp}/nic-plan.$$"
    rm -f "${TMPDIR:-/tmp}/nic-plan.$$"
}

# init_path ROOTDIR CMDLINE: what to run in the new root: init= if given,
# else the kernel's own list (/sbin/init /etc/init /bin/init /bin/sh).
init_path() {
    i=$(cmdline_arg init "$2")
    if [ -n "$i" ]; then
        echo "$i"
        return
    fi
    for i in /sbin/init /etc/init /bin/init /bin/sh; do
        if [ -x "$1$i" ] || [ -L "$1$i" ]; then
            echo "$i"
            return
        fi
    done
}
