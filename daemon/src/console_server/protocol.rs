//! The console socket's wire format: length-prefixed frames, both ways.
//!
//! ```text
//! frame   = kind:u8  len:u32 (big endian)  payload[len]      (len <= 1 MiB)
//! client -> server
//!   ATTACH  0x04  empty            first frame: replay the ring, then stream
//!   QUERY   0x05  empty            first frame: answer one INFO, then close
//!   DATA    0x01  bytes            keyboard input (taken only from the typer)
//!   RESIZE  0x02  cols:u16 rows:u16 (big endian)  the client's window size
//!   DETACH  0x03  empty            the client leaves; the guest keeps running
//!   KEYS    0x07  scan codes       key presses for the guest's keyboard, in
//!                                  scan code set 1 (taken only from the typer)
//!   VIEW    0x08  u8               1: send SCREEN frames as the screen
//!                                  changes; 0: stop
//!   SNAPSHOT 0x0A empty            first frame: answer one SCREEN, then close
//! server -> client
//!   DATA    0x01  bytes            guest console output (replay first)
//!   INFO    0x06  JSON             {pid,name,conf,started,consoles,window,typer}
//!   SCREEN  0x09  screen           the VGA text screen (see `screen`)
//! ```
//!
//! Unknown kinds are ignored by both sides, so either can grow.

use std::io::{self, Read, Write};

/// Guest output (server to client) or keyboard input (client to server).
pub const DATA: u8 = 0x01;
/// The client's window size: cols, rows as two big-endian u16.
pub const RESIZE: u8 = 0x02;
/// The client detaches.
pub const DETACH: u8 = 0x03;
/// First frame of a console: replay, then live output.
pub const ATTACH: u8 = 0x04;
/// First frame of a status query (`colinux-console --list`).
pub const QUERY: u8 = 0x05;
/// Server status as JSON ([`Info`]).
pub const INFO: u8 = 0x06;

/// Key presses in scan code set 1 (client to server).
pub const KEYS: u8 = 0x07;
/// Whether the client watches the screen: one byte, 1 or 0.
pub const VIEW: u8 = 0x08;
/// The VGA text screen (server to client; [`super::screen::encode`]).
pub const SCREEN: u8 = 0x09;
/// First frame of a one-shot screen query (`colinux-console --screen`).
pub const SNAPSHOT: u8 = 0x0a;

/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Encodes one frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("console frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// A RESIZE payload.
pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let c = cols.to_be_bytes();
    let r = rows.to_be_bytes();
    [c[0], c[1], r[0], r[1]]
}

/// Parses a RESIZE payload into (cols, rows).
pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    (p.len() == 4).then(|| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    })
}

/// What INFO carries (also the shape of `<pid>.json`, minus the live fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    /// The daemon's pid.
    pub pid: u32,
    /// `--name`, if given.
    #[serde(default)]
    pub name: Option<String>,
    /// The configuration file (`@file`), if any.
    #[serde(default)]
    pub conf: Option<String>,
    /// Start time, seconds since the Unix epoch.
    #[serde(default)]
    pub started: u64,
    /// Consoles attached now (live; 0 in the file).
    #[serde(default)]
    pub consoles: usize,
    /// The typer's last window size (cols, rows), if it sent one.
    #[serde(default)]
    pub window: Option<(u16, u16)>,
    /// In an INFO to an attached console: whether its keystrokes reach the guest.
    #[serde(default)]
    pub typer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = encode(DATA, b"hello");
        buf.extend(encode(RESIZE, &resize_payload(80, 24)));
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((DATA, b"hello".to_vec())));
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_resize(&p)), (RESIZE, Some((80, 24))));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        let huge = [DATA, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).is_err());
    }
}
