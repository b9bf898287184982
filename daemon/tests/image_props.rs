//! The image readers look at files of any origin: they must never panic.

use colinux_daemon::image::{ext, parse_size, swap};
use proptest::prelude::*;

proptest! {
    #[test]
    fn size_parser_total(s in "\\PC{0,24}") {
        match parse_size(&s) {
            Ok(n) => prop_assert!(n > 0 && n % 1024 == 0),
            Err(e) => prop_assert!(e.to_string().contains("bad size")),
        }
    }

    #[test]
    fn size_parser_numbers(n in 0u64..=u64::MAX, unit in prop::sample::select(vec!["K", "M", "G", "T", "MiB", "gb"])) {
        let text = format!("{n}{unit}");
        if let Ok(bytes) = parse_size(&text) {
            prop_assert!(bytes >= n);
        }
    }

    #[test]
    fn superblock_and_swap_readers_total(head in prop::collection::vec(any::<u8>(), 0..5000), magic in any::<bool>()) {
        let mut head = head;
        if magic && head.len() >= 2048 {
            head[1024 + 0x38] = 0x53;
            head[1024 + 0x39] = 0xEF;
        }
        if let Some(e) = ext::parse(&head) {
            prop_assert!(e.block_size >= 1024 && e.block_size <= 65536);
        }
        let _ = swap::parse(&head);
    }

    #[test]
    fn swap_header_reads_back(pages in 10u64..1_000_000, label in "[a-z0-9]{0,16}", uuid in any::<[u8; 16]>()) {
        let page = swap::header(pages * 4096, uuid, Some(&label)).unwrap();
        let info = swap::parse(&page).unwrap();
        prop_assert_eq!(u64::from(info.last_page), pages - 1);
        prop_assert_eq!(info.label.unwrap_or_default(), label);
    }
}
