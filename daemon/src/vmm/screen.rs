//! The guest's screen as `colinux.conf` describes it: `cocon=COLSxROWS` sizes
//! the VGA text screen, `color=FG,BG` and `cursor=PERCENT` become the kernel's
//! own defaults for its virtual terminals (`vt.color=`, `vt.cur_default=`),
//! so the guest draws them and every view of the screen shows them.

use colinux_conf::keys::VGA_COLORS;
use colinux_conf::Config;
use colinux_devices::legacy::vga::TextSize;
use colinux_driver::arch::x86_64::boot::zero_page::VgaTextMode;

/// The screen size: `cocon=` when a VGA text screen can have it, else 80x25.
pub fn text_size(config: &Config) -> TextSize {
    let g = config.console_geometry();
    let size = TextSize {
        cols: u16::try_from(g.cols).unwrap_or(u16::MAX),
        rows: u16::try_from(g.rows).unwrap_or(u16::MAX),
    };
    if size.fits() {
        size
    } else {
        TextSize::default()
    }
}

/// What the zero page says about the screen.
pub fn boot_mode(size: TextSize) -> VgaTextMode {
    VgaTextMode {
        cols: u8::try_from(size.cols).unwrap_or(80),
        rows: u8::try_from(size.rows).unwrap_or(25),
        font_height: size.font_height() as u8,
    }
}

/// The VGA colour number of a `color=` name (black 0 .. white 15).
pub fn color_index(name: &str) -> Option<u8> {
    VGA_COLORS.iter().position(|c| *c == name).map(|i| i as u8)
}

/// The kernel words that give `color=` and `cursor=` effect.
pub fn kernel_words(config: &Config) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(c) = &config.color {
        if let (Some(fg), Some(bg)) = (color_index(&c.foreground), color_index(&c.background)) {
            // Bit 7 of a VGA attribute is blink: bright backgrounds take their
            // dark twin (said by `unhonoured::list`).
            words.push(format!("vt.color={:#04x}", ((bg & 7) << 4) | fg));
        }
    }
    if let Some(p) = config.cursor {
        words.push(format!("vt.cur_default={}", cursor_type(p)));
    }
    words
}

/// The Linux console's cursor type for a cursor of `percent` of the cell:
/// 1 none, 2 underline, 3 lower third, 4 lower half, 5 two thirds, 6 block.
pub fn cursor_type(percent: u8) -> u8 {
    match percent {
        0 => 1,
        1..=25 => 2,
        26..=40 => 3,
        41..=60 => 4,
        61..=80 => 5,
        _ => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(words: &str) -> Config {
        colinux_conf::parse_str(
            words,
            std::path::Path::new("t.conf"),
            std::path::Path::new("/"),
        )
        .unwrap()
    }

    #[test]
    fn cocon_sizes_the_screen_when_it_fits() {
        assert_eq!(text_size(&conf("")), TextSize { cols: 80, rows: 25 });
        let c = conf("cocon=100x30");
        assert_eq!(
            text_size(&c),
            TextSize {
                cols: 100,
                rows: 30
            }
        );
        let big = conf("cocon=300x100");
        assert_eq!(text_size(&big), TextSize::default());
        assert_eq!(
            boot_mode(TextSize {
                cols: 132,
                rows: 100
            })
            .font_height,
            8
        );
    }

    #[test]
    fn color_and_cursor_become_kernel_defaults() {
        assert!(kernel_words(&conf("")).is_empty());
        assert_eq!(
            kernel_words(&conf("color=white,blue cursor=100")),
            ["vt.color=0x1f", "vt.cur_default=6"]
        );
        let c = conf("color=Yellow,LightBlue cursor=0");
        assert_eq!(kernel_words(&c), ["vt.color=0x1e", "vt.cur_default=1"]);
        assert_eq!(cursor_type(18), 2, "coLinux's default cursor: underline");
    }
}
