//! The VGA text screen: enough of a VGA adapter in colour text mode (mode 3)
//! for the Linux kernel's `vgacon`, which gives the guest its virtual
//! terminals (tty1..tty63) — the screen coLinux's console windows showed.
//!
//! - The text buffer is guest RAM at [`TEXT_BUFFER`] (`0xB8000`, 32 KiB): the
//!   guest writes characters and attributes with plain stores, no exits. The
//!   daemon reads it when someone looks ([`VgaText::snapshot`]).
//! - The registers are ports `0x3C0..=0x3DF`: the CRT controller (`0x3D4`/
//!   `0x3D5`: start address for hardware scrolling, cursor location and
//!   shape, the display size a `VT_RESIZE` programs), the attribute
//!   controller, sequencer, graphics controller and DAC (stored, so a guest
//!   reads back what it wrote; colours are the standard palette).
//! - The size comes from the boot parameters' screen fields (the daemon sets
//!   them from `cocon=`), and the CRTC starts programmed to match, so a later
//!   resize by the guest is followed too.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::bus::BusDevice;

/// First port of the VGA register block.
pub const VGA_PORT_BASE: u64 = 0x3c0;
/// Number of ports (`0x3C0..=0x3DF`).
pub const VGA_PORT_COUNT: u64 = 0x20;
/// Guest-physical address of the colour text buffer.
pub const TEXT_BUFFER: u64 = 0xb8000;
/// Size of the colour text buffer (what vgacon uses for hardware scrolling).
pub const TEXT_BUFFER_SIZE: usize = 0x8000;
/// Largest screen that fits the text buffer, in character cells.
pub const MAX_CELLS: usize = TEXT_BUFFER_SIZE / 2;
/// Widest screen the boot parameters can describe (an 8-bit field).
pub const MAX_COLS: u16 = 255;
/// Tallest screen the boot parameters can describe (an 8-bit field).
pub const MAX_ROWS: u16 = 255;

// Port offsets from VGA_PORT_BASE.
const ATTR_WRITE: u64 = 0x00; // 0x3C0
const ATTR_READ: u64 = 0x01; // 0x3C1
const MISC_WRITE: u64 = 0x02; // 0x3C2
const SEQ_INDEX: u64 = 0x04; // 0x3C4
const SEQ_DATA: u64 = 0x05; // 0x3C5
const DAC_READ_INDEX: u64 = 0x07; // 0x3C7
const DAC_WRITE_INDEX: u64 = 0x08; // 0x3C8
const DAC_DATA: u64 = 0x09; // 0x3C9
const MISC_READ: u64 = 0x0c; // 0x3CC
const GC_INDEX: u64 = 0x0e; // 0x3CE
const GC_DATA: u64 = 0x0f; // 0x3CF
const CRTC_INDEX: u64 = 0x14; // 0x3D4
const CRTC_DATA: u64 = 0x15; // 0x3D5
const INPUT_STATUS_1: u64 = 0x1a; // 0x3DA

// CRT controller registers.
const CRTC_H_DISP_END: usize = 0x01;
const CRTC_OVERFLOW: usize = 0x07;
const CRTC_MAX_SCAN: usize = 0x09;
const CRTC_CURSOR_START: usize = 0x0a;
const CRTC_CURSOR_END: usize = 0x0b;
const CRTC_START_HI: usize = 0x0c;
const CRTC_START_LO: usize = 0x0d;
const CRTC_CURSOR_HI: usize = 0x0e;
const CRTC_CURSOR_LO: usize = 0x0f;
const CRTC_V_DISP_END: usize = 0x12;
const CRTC_OFFSET: usize = 0x13;
const CRTC_REGS: usize = 0x19;

/// A text screen size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

impl Default for TextSize {
    fn default() -> Self {
        Self { cols: 80, rows: 25 }
    }
}

impl TextSize {
    /// Whether the size can be a VGA text screen the boot parameters describe
    /// (at most [`MAX_COLS`] x [`MAX_ROWS`] and [`MAX_CELLS`] cells).
    pub fn fits(&self) -> bool {
        (1..=MAX_COLS).contains(&self.cols)
            && (1..=MAX_ROWS).contains(&self.rows)
            && usize::from(self.cols) * usize::from(self.rows) <= MAX_CELLS
    }

    /// The character cell height the screen uses: 16 scan lines (the VGA
    /// font), or 8 for screens taller than 64 rows (as 80x50 modes did), so the
    /// display stays within the CRTC's 1024 scan lines.
    pub fn font_height(&self) -> u16 {
        if self.rows > 64 {
            8
        } else {
            16
        }
    }
}

/// One character cell: the code page 437 character and its attribute byte
/// (foreground in bits 0-3, background in 4-6, blink in bit 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell {
    /// The character (code page 437).
    pub ch: u8,
    /// The attribute.
    pub attr: u8,
}

/// The cursor as the CRTC shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Column.
    pub col: u16,
    /// Row.
    pub row: u16,
    /// First and last scan line of the cursor within the cell.
    pub shape: (u8, u8),
}

/// What is on the screen: the visible cells, row by row, and the cursor
/// (`None` when it is disabled or off the visible part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextScreen {
    /// The size.
    pub size: TextSize,
    /// The cell height in scan lines (for the cursor shape).
    pub font_height: u8,
    /// `size.cols * size.rows` cells.
    pub cells: Vec<Cell>,
    /// The cursor, if shown.
    pub cursor: Option<Cursor>,
}

impl TextScreen {
    /// A blank screen (spaces, light grey on black) with no cursor.
    pub fn blank(size: TextSize) -> Self {
        Self {
            size,
            font_height: size.font_height() as u8,
            cells: vec![
                Cell {
                    ch: b' ',
                    attr: 0x07
                };
                cells(size)
            ],
            cursor: None,
        }
    }

    /// Row `r` (empty past the end).
    pub fn row(&self, r: u16) -> &[Cell] {
        let w = usize::from(self.size.cols);
        let start = (usize::from(r) * w).min(self.cells.len());
        let end = (start + w).min(self.cells.len());
        &self.cells[start..end]
    }
}

fn cells(size: TextSize) -> usize {
    usize::from(size.cols) * usize::from(size.rows)
}

/// The VGA register block of a colour text adapter.
#[derive(Debug, Clone)]
pub struct VgaText {
    misc: u8,
    crtc_index: u8,
    crtc: [u8; CRTC_REGS],
    seq_index: u8,
    seq: [u8; 5],
    gc_index: u8,
    gc: [u8; 9],
    attr_index: u8,
    attr_flip: bool,
    attr: [u8; 0x15],
    dac_write: usize,
    dac_read: usize,
    dac: Vec<u8>,
}

impl VgaText {
    /// A mode-3 adapter whose CRTC is programmed for `size` (which must
    /// [`TextSize::fits`]; a size that does not is clamped).
    pub fn new(size: TextSize) -> Self {
        let size = TextSize {
            cols: size.cols.clamp(1, MAX_COLS),
            rows: size.rows.clamp(1, MAX_ROWS),
        };
        let fh = size.font_height();
        let scanlines = (size.rows * fh).min(1024) - 1;
        let mut crtc = [0u8; CRTC_REGS];
        crtc[CRTC_H_DISP_END] = (size.cols - 1) as u8;
        crtc[CRTC_MAX_SCAN] = (fh - 1) as u8;
        // The classic underline cursor: the two lines above the cell's last.
        crtc[CRTC_CURSOR_START] = (fh - 3) as u8;
        crtc[CRTC_CURSOR_END] = (fh - 2) as u8;
        crtc[CRTC_V_DISP_END] = scanlines as u8;
        crtc[CRTC_OVERFLOW] = overflow_bits(scanlines);
        crtc[CRTC_OFFSET] = (size.cols / 2) as u8;
        let mut attr = [0u8; 0x15];
        for (i, a) in attr.iter_mut().take(16).enumerate() {
            *a = i as u8;
        }
        attr[0x10] = 0x0c; // line graphics, blink
        attr[0x12] = 0x0f; // all planes
        Self {
            misc: 0x67, // colour, RAM enabled, 28 MHz
            crtc_index: 0,
            crtc,
            seq_index: 0,
            seq: [0x03, 0x00, 0x03, 0x00, 0x02],
            gc_index: 0,
            gc: [0, 0, 0, 0, 0, 0x10, 0x0e, 0, 0xff],
            attr_index: 0,
            attr_flip: false,
            attr,
            dac_write: 0,
            dac_read: 0,
            dac: vec![0; 256 * 3],
        }
    }

    /// The size the CRTC displays: columns from the horizontal display end,
    /// rows from the vertical display end over the cell height.
    pub fn size(&self) -> TextSize {
        let cols = u16::from(self.crtc[CRTC_H_DISP_END]) + 1;
        let ov = self.crtc[CRTC_OVERFLOW];
        let vde = u16::from(self.crtc[CRTC_V_DISP_END])
            | (u16::from(ov & 0x02) << 7)
            | (u16::from(ov & 0x40) << 3);
        let rows = (vde + 1) / self.font_height();
        TextSize {
            cols,
            rows: rows.max(1),
        }
    }

    fn font_height(&self) -> u16 {
        u16::from(self.crtc[CRTC_MAX_SCAN] & 0x1f) + 1
    }

    fn word(&self, hi: usize, lo: usize) -> usize {
        (usize::from(self.crtc[hi]) << 8) | usize::from(self.crtc[lo])
    }

    /// Reads the visible screen from the text buffer in `mem`: from the CRTC
    /// start address on, with the cursor placed relative to it. Cells beyond
    /// the buffer (or memory the guest does not have) read as blanks.
    pub fn snapshot<M: GuestMemory>(&self, mem: &M) -> TextScreen {
        let size = self.size();
        let n = cells(size).min(MAX_CELLS);
        let start = self.word(CRTC_START_HI, CRTC_START_LO) % MAX_CELLS;
        let mut raw = vec![0u8; TEXT_BUFFER_SIZE];
        if mem.read_slice(&mut raw, GuestAddress(TEXT_BUFFER)).is_err() {
            return TextScreen::blank(size);
        }
        let mut out = Vec::with_capacity(cells(size));
        for i in 0..cells(size) {
            let at = (start + i) * 2;
            if i < n && at + 1 < raw.len() {
                out.push(Cell {
                    ch: raw[at],
                    attr: raw[at + 1],
                });
            } else {
                out.push(Cell {
                    ch: b' ',
                    attr: 0x07,
                });
            }
        }
        let disabled = self.crtc[CRTC_CURSOR_START] & 0x20 != 0;
        let pos = self.word(CRTC_CURSOR_HI, CRTC_CURSOR_LO);
        let cursor = pos
            .checked_sub(start)
            .filter(|p| !disabled && *p < cells(size))
            .map(|p| Cursor {
                col: (p % usize::from(size.cols)) as u16,
                row: (p / usize::from(size.cols)) as u16,
                shape: (
                    self.crtc[CRTC_CURSOR_START] & 0x1f,
                    self.crtc[CRTC_CURSOR_END] & 0x1f,
                ),
            });
        TextScreen {
            size,
            font_height: self.font_height() as u8,
            cells: out,
            cursor,
        }
    }

    fn write_byte(&mut self, port: u64, v: u8) {
        match port {
            ATTR_WRITE => {
                if self.attr_flip {
                    if let Some(r) = self.attr.get_mut(usize::from(self.attr_index & 0x1f)) {
                        *r = v;
                    }
                } else {
                    self.attr_index = v;
                }
                self.attr_flip = !self.attr_flip;
            }
            MISC_WRITE => self.misc = v,
            SEQ_INDEX => self.seq_index = v,
            SEQ_DATA => {
                if let Some(r) = self.seq.get_mut(usize::from(self.seq_index)) {
                    *r = v;
                }
            }
            DAC_READ_INDEX => self.dac_read = usize::from(v) * 3,
            DAC_WRITE_INDEX => self.dac_write = usize::from(v) * 3,
            DAC_DATA => {
                let i = self.dac_write % self.dac.len();
                self.dac[i] = v & 0x3f;
                self.dac_write = (i + 1) % self.dac.len();
            }
            GC_INDEX => self.gc_index = v,
            GC_DATA => {
                if let Some(r) = self.gc.get_mut(usize::from(self.gc_index)) {
                    *r = v;
                }
            }
            CRTC_INDEX => self.crtc_index = v,
            CRTC_DATA => {
                if let Some(r) = self.crtc.get_mut(usize::from(self.crtc_index)) {
                    *r = v;
                }
            }
            _ => {}
        }
    }

    fn read_byte(&mut self, port: u64) -> u8 {
        match port {
            ATTR_WRITE => self.attr_index,
            ATTR_READ => self
                .attr
                .get(usize::from(self.attr_index & 0x1f))
                .copied()
                .unwrap_or(0),
            MISC_READ => self.misc,
            SEQ_INDEX => self.seq_index,
            SEQ_DATA => self
                .seq
                .get(usize::from(self.seq_index))
                .copied()
                .unwrap_or(0),
            DAC_DATA => {
                let i = self.dac_read % self.dac.len();
                self.dac_read = (i + 1) % self.dac.len();
                self.dac[i]
            }
            GC_INDEX => self.gc_index,
            GC_DATA => self
                .gc
                .get(usize::from(self.gc_index))
                .copied()
                .unwrap_or(0),
            CRTC_INDEX => self.crtc_index,
            CRTC_DATA => self
                .crtc
                .get(usize::from(self.crtc_index))
                .copied()
                .unwrap_or(0),
            INPUT_STATUS_1 => {
                // Reading it resets the attribute controller to its index.
                self.attr_flip = false;
                // Toggle "display disabled" and vertical retrace so polling
                // loops end.
                0x09
            }
            _ => 0xff,
        }
    }
}

/// The overflow register's bits 8 (bit 1) and 9 (bit 6) of the vertical
/// display end.
fn overflow_bits(scanlines: u16) -> u8 {
    (((scanlines >> 8) & 1) << 1) as u8 | (((scanlines >> 9) & 1) << 6) as u8
}

impl BusDevice for VgaText {
    /// Word and dword accesses go to consecutive ports (`outw 0x3D4` sets the
    /// CRTC index and writes its register in one go, as vgacon does).
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_byte(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.write_byte(offset + i as u64, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn put(mem: &GuestMemoryMmap, cell: usize, text: &str, attr: u8) {
        for (i, c) in text.bytes().enumerate() {
            mem.write_slice(
                &[c, attr],
                GuestAddress(TEXT_BUFFER + 2 * (cell + i) as u64),
            )
            .unwrap();
        }
    }

    /// `write_vga` in vgacon: one 16-bit write per register byte.
    fn crtc_word(vga: &mut VgaText, reg: u8, value: u16) {
        vga.write(CRTC_INDEX, &[reg, (value >> 8) as u8]);
        vga.write(CRTC_INDEX, &[reg + 1, value as u8]);
    }

    #[test]
    fn the_crtc_starts_with_the_configured_size_and_follows_a_resize() {
        for size in [
            TextSize::default(),
            TextSize {
                cols: 100,
                rows: 30,
            },
            TextSize {
                cols: 132,
                rows: 100,
            },
        ] {
            assert!(size.fits(), "{size:?}");
            assert_eq!(VgaText::new(size).size(), size);
        }
        // What vgacon_doresize writes for 90x40 with a 16-line font.
        let mut vga = VgaText::new(TextSize::default());
        let scan = 40 * 16 - 1;
        vga.write(CRTC_INDEX, &[CRTC_H_DISP_END as u8, 89]);
        vga.write(CRTC_INDEX, &[CRTC_V_DISP_END as u8, (scan & 0xff) as u8]);
        vga.write(CRTC_INDEX, &[CRTC_OVERFLOW as u8, overflow_bits(scan)]);
        assert_eq!(vga.size(), TextSize { cols: 90, rows: 40 });
        assert!(!TextSize {
            cols: 200,
            rows: 100
        }
        .fits());
    }

    #[test]
    fn a_snapshot_follows_the_start_address_and_the_cursor() {
        let mem = memory();
        let mut vga = VgaText::new(TextSize::default());
        put(&mem, 0, "old line", 0x07);
        put(&mem, 80, "login: ", 0x1f);
        // Hardware scroll by one row: the screen starts at cell 80.
        crtc_word(&mut vga, CRTC_START_HI as u8, 80);
        crtc_word(&mut vga, CRTC_CURSOR_HI as u8, 80 + 7);
        let s = vga.snapshot(&mem);
        let row0: Vec<u8> = s.row(0).iter().map(|c| c.ch).collect();
        assert!(
            row0.starts_with(b"login: "),
            "{:?}",
            String::from_utf8_lossy(&row0)
        );
        assert_eq!(s.row(0)[0].attr, 0x1f);
        let c = s.cursor.unwrap();
        assert_eq!((c.col, c.row), (7, 0));
        // The cursor disabled (bit 5 of the start register).
        vga.write(CRTC_INDEX, &[CRTC_CURSOR_START as u8, 0x20]);
        assert_eq!(vga.snapshot(&mem).cursor, None);
    }

    #[test]
    fn registers_read_back_and_the_attribute_flip_flop_resets() {
        let mut vga = VgaText::new(TextSize::default());
        let mut b = [0u8];
        vga.write(CRTC_INDEX, &[CRTC_CURSOR_START as u8, 0x0d]);
        vga.write(CRTC_INDEX, &[CRTC_CURSOR_START as u8]);
        vga.read(CRTC_DATA, &mut b);
        assert_eq!(b[0], 0x0d);
        // Index, then data; a status read puts it back to "index".
        vga.write(ATTR_WRITE, &[0x10]);
        vga.read(INPUT_STATUS_1, &mut b);
        vga.write(ATTR_WRITE, &[0x01]);
        vga.write(ATTR_WRITE, &[0x3f]);
        vga.read(ATTR_READ, &mut b);
        assert_eq!(b[0], 0x3f);
        // Out-of-range indexes are ignored, never panic.
        vga.write(CRTC_INDEX, &[0xff, 0xff]);
        vga.write(SEQ_INDEX, &[0xff, 0xff]);
        vga.write(GC_INDEX, &[0xff, 0xff]);
        for _ in 0..1000 {
            vga.write(DAC_DATA, &[0xff]);
            vga.read(DAC_DATA, &mut b);
        }
    }

    #[test]
    fn a_start_address_near_the_end_reads_blanks_not_past_the_buffer() {
        let mem = memory();
        let mut vga = VgaText::new(TextSize::default());
        crtc_word(&mut vga, CRTC_START_HI as u8, (MAX_CELLS - 10) as u16);
        let s = vga.snapshot(&mem);
        assert_eq!(s.cells.len(), 80 * 25);
        assert!(s.cells[20..].iter().all(|c| c.ch == b' '));
    }
}
