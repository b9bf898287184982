//! The classic colinux.conf / colinux-daemon command-line parser and its typed model.
