# vt-console: no guest side. The guest is the sysvinit system image
# (distro-sysv: no agent, no ssh key, nothing on the serial line but its
# console messages); vm-images/host/scenarios/vt-console.sh checks it from the
# host, through the daemon's screen (colinux-console --screen, --vt). The
# harness wants a guest check for every scenario.
