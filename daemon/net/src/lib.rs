//! Network backends moving Ethernet frames for the guest NIC: slirp, TAP, AF_PACKET bridge.
