//! A small QMP client: asks the host VM's QEMU for its state when a watchdog
//! fires (run status, CPU registers through `human-monitor-command`, a SysRq
//! key for the host VM's kernel to print its CPUs' backtraces).
//!
//! QMP is one JSON object per line over a Unix socket: a greeting, then
//! `qmp_capabilities`, then `{"execute": ...}` answered by `{"return": ...}`
//! or `{"error": ...}`, with asynchronous `{"event": ...}` lines in between.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A QMP session with a running QEMU.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `socket` and leaves capability negotiation done; every
    /// read and write gives up after `timeout` (a QEMU whose main loop is
    /// stuck does not answer, and that is itself evidence).
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to QMP at {}", socket.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message().context("reading the QMP greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("not a QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP socket closed");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Runs one command and returns its `return` value; events are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        writeln!(self.writer, "{msg}")?;
        loop {
            let m = self
                .read_message()
                .with_context(|| format!("waiting for the answer to {command}"))?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                bail!("{command}: {e}");
            }
        }
    }

    /// Runs a human-monitor command (`info registers -a`, `sendkey ...`) and
    /// returns its text.
    pub fn hmp(&mut self, command_line: &str) -> Result<String> {
        let r = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        Ok(r.as_str().unwrap_or_default().to_string())
    }
}

/// A fake QEMU for tests: greets, accepts the capabilities, then answers
/// `commands` commands with an empty return, and hands back their lines.
#[cfg(test)]
pub(crate) mod fake {
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;

    /// Listens on `socket` and serves one client on a thread of its own.
    pub fn serve(socket: &Path, commands: usize) -> std::thread::JoinHandle<Vec<String>> {
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut lines = Vec::new();
            for _ in 0..=commands {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
                lines.push(line);
            }
            assert!(lines[0].contains("qmp_capabilities"), "{}", lines[0]);
            lines.split_off(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU that speaks just enough QMP: greeting, capabilities, an
    /// event before the answer, and an error.
    #[test]
    fn commands_are_answered_and_events_skipped() {
        let dir = std::env::temp_dir().join(format!("qmp-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("q.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("qmp_capabilities"));
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert!(line.contains("info registers -a"), "{line}");
            writeln!(w, r#"{{"event": "RTC_CHANGE", "data": {{}}}}"#).unwrap();
            writeln!(
                w,
                r#"{{"return": "CPU#0\nRIP=ffffffff81000000 CPL=0 HLT=1\n"}}"#
            )
            .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            writeln!(
                w,
                r#"{{"error": {{"class": "GenericError", "desc": "no"}}}}"#
            )
            .unwrap();
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        let regs = q.hmp("info registers -a").unwrap();
        assert!(regs.starts_with("CPU#0\nRIP=ffffffff81000000"), "{regs}");
        let e = q.execute("query-status", None).unwrap_err();
        assert!(format!("{e}").contains("GenericError"), "{e}");
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_silent_qemu_times_out() {
        let dir = std::env::temp_dir().join(format!("qmp-silent-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("q.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();
        let t = std::time::Instant::now();
        let r = Qmp::connect(&sock, Duration::from_millis(300));
        assert!(r.is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
