//! The real `colinux-daemon` binary: `--dump-config` snapshots of the sample
//! configurations in fixtures/conf, exit statuses and messages.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};

use rstest::rstest;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/conf")
}

fn daemon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_colinux-daemon"))
        .args(args)
        .current_dir(fixtures())
        .env_remove("RUST_LOG")
        .output()
        .expect("run colinux-daemon")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[rstest]
#[case::debian("debian.conf")]
#[case::windows_paths("windows-paths.conf")]
#[case::crlf("crlf.conf")]
#[case::aliases("aliases.conf")]
#[case::multi_nic("multi-nic.conf")]
#[case::console_exec("console-exec.conf")]
#[case::utf8("utf8.conf")]
fn dump_config_snapshots(#[case] file: &str) {
    let at = format!("@{file}");
    let out = daemon(&["--dump-config", &at]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let json = text(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert!(v["kernel"].is_string());
    insta::assert_snapshot!(
        format!("dump_config__{}", file.replace(['.', '-'], "_")),
        json
    );

    // The classic text written back describes the same machine.
    let conf = daemon(&["--dump-conf", &at]);
    assert_eq!(conf.status.code(), Some(0));
    let reparsed =
        colinux_conf::parse_str(&text(&conf.stdout), "dump.conf".as_ref(), &fixtures()).unwrap();
    let original = colinux_conf::parse_file(&fixtures().join(file)).unwrap();
    assert_eq!(reparsed.to_json_pretty(), original.to_json_pretty());
}

#[test]
fn dump_config_matches_library() {
    let out = daemon(&["--dump-config", "@multi-nic.conf", "mem=512", "ro"]);
    assert_eq!(out.status.code(), Some(0));
    let lib = colinux_conf::parse_args(["@multi-nic.conf", "mem=512", "ro"], &fixtures()).unwrap();
    assert_eq!(text(&out.stdout).trim_end(), lib.to_json_pretty());
    assert_eq!(lib.mem_mib, Some(512));
    assert_eq!(lib.kernel_cmdline, "root=/dev/cobd0 ro");
}

#[rstest]
#[case::double_defined(&["--dump-config", "@bad/double-defined.conf"], "double-defined.conf:5: `cobd0` double defined (first defined at ")]
#[case::bad_mac(&["--dump-config", "@bad/bad-mac.conf"], "bad-mac.conf:3: `eth0=tuntap,\"TAP\",00:ff:12:34:56`: expected a MAC address")]
#[case::xml_file(&["--dump-config", "@bad/default.colinux.xml"], "obsolete")]
#[case::xml_option(&["-c", "bad/default.colinux.xml"], "obsolete")]
#[case::missing_file(&["--dump-config", "@nope.conf"], "cannot read configuration file `nope.conf`")]
#[case::empty_value(&["--dump-config", "kernel="], "command line, word 1: `kernel=` has an empty value")]
#[case::range(&["--dump-config", "eth16=slirp"], "index 16 out of range; expected eth0 .. eth15")]
#[case::windows_only(&["--install-service"], "Windows-only")]
fn config_errors_exit_2(#[case] args: &[&str], #[case] message: &str) {
    let out = daemon(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("colinux-daemon: "), "{err}");
    assert!(err.contains(message), "`{err}` should contain `{message}`");
    assert!(out.stdout.is_empty(), "nothing on stdout for a bad config");
}

#[test]
fn usage_error_exits_2() {
    let out = daemon(&["-v", "nine"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("-v"), "{}", text(&out.stderr));
}

#[test]
fn capabilities_is_the_json_list() {
    let out = daemon(&["--capabilities"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, colinux_daemon::CAPABILITIES);
}

#[test]
fn help_lists_classic_and_new_options() {
    let out = daemon(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in [
        " -d ",
        " -k ",
        " -p <PIDFILE>",
        " -t <CONSOLE>",
        " -v <LEVEL>",
        "@file",
        "--dump-config",
        "--capabilities",
        "--opened-libraries",
        "--check",
        "--on-reboot <WHAT>",
    ] {
        assert!(help.contains(needle), "help lacks `{needle}`:\n{help}");
    }
    let short = daemon(&["-h"]);
    assert_eq!(short.status.code(), Some(0));
}

#[test]
fn words_and_double_dash_reach_the_kernel() {
    let out = daemon(&[
        "-d",
        "root=/dev/cobd0",
        "ro",
        "--dump-config",
        "-k",
        "--",
        "single",
        "-b",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kernel_cmdline"], "root=/dev/cobd0 ro -- single -b");
}

#[test]
fn repeated_plain_key_warns_and_later_wins() {
    let out = daemon(&["--dump-config", "mem=64", "mem=128"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mem_mib"], 128);
    let err = text(&out.stderr);
    assert!(
        err.contains("`mem` given again") && err.contains("later value `128` wins"),
        "{err}"
    );
}

#[test]
fn booting_without_a_kernel_fails_cleanly() {
    // fixtures/conf has no vmlinux: whatever boot path is built in, the run
    // must fail with a message, never succeed or crash.
    let out = daemon(&["-d", "@debian.conf"]);
    let err = text(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "status {:?}: {err}",
        out.status
    );
    assert!(err.contains("colinux-daemon:"), "{err}");
    if err.contains("booting is not implemented in this build") {
        assert_eq!(out.status.code(), Some(1));
    }
    assert!(!err.contains(".."), "one sentence, one full stop: {err}");
}

#[test]
fn check_reports_missing_files() {
    let out = daemon(&["--check", "@debian.conf"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("missing kernel:") && err.contains("vmlinux"),
        "{err}"
    );
    assert!(
        err.contains("missing cobd0:") && err.contains("Debian-3.0r0.ext3.1gb"),
        "{err}"
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-ok");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinux"), b"x").unwrap();
    std::fs::write(dir.join("root.fs"), b"x").unwrap();
    std::fs::write(
        dir.join("ok.conf"),
        "kernel=vmlinux cobd0=root.fs cofs0=.\n",
    )
    .unwrap();
    let ok = Command::new(env!("CARGO_BIN_EXE_colinux-daemon"))
        .args(["--check"])
        .arg(format!("@{}", dir.join("ok.conf").display()))
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "configuration OK\n");
}

/// `ttysN=` and `execN=` values this host cannot use are configuration
/// errors (status 2) naming the file and line, before any boot.
#[rstest]
#[case::com_port(
    "ttys0=COM1\n",
    "bad.conf:2: `ttys0=COM1`: `COM1` is a Windows port name"
)]
#[case::com_colon(
    "ttys1=com2:\n",
    "bad.conf:2: `ttys1=com2:`: `com2:` is a Windows port name"
)]
#[case::exec_missing(
    "exec0=/nonexistent\n",
    "bad.conf:2: `exec0=/nonexistent`: `/nonexistent`: No such file"
)]
#[case::exec_not_in_path(
    "exec3=no-such-helper-xyz\n",
    "bad.conf:2: `exec3=no-such-helper-xyz`: `no-such-helper-xyz`: no such program in PATH"
)]
#[case::cofs_missing(
    "cofs0=/nonexistent-share\n",
    "bad.conf:2: `cofs0=/nonexistent-share`: the directory /nonexistent-share does not exist"
)]
#[case::cofs_not_a_directory(
    "cofs2=vmlinux,ro\n",
    "bad.conf:2: `cofs2=vmlinux,ro`: {DIR}/vmlinux is not a directory"
)]
#[case::cofs_unreadable(
    "cofs5=locked\n",
    "bad.conf:2: `cofs5=locked`: cannot read the directory {DIR}/locked: Permission denied"
)]
fn host_value_errors_exit_2(#[case] line: &str, #[case] message: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("host-errors-{}", message.len() + line.len()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinux"), b"x").unwrap();
    let locked = dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let message = message.replace("{DIR}", &dir.display().to_string());
    // Root reads any directory: the unreadable case runs as nobody, where
    // the permission bits apply.
    let as_nobody = line.contains("locked") && running_as_root();
    std::fs::write(dir.join("bad.conf"), format!("kernel=vmlinux\n{line}")).unwrap();
    for check in [true, false] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_colinux-daemon"));
        if check {
            cmd.arg("--check");
        } else {
            cmd.arg("-d");
        }
        if as_nobody {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        let out = cmd
            .arg(format!("@{}", dir.join("bad.conf").display()))
            .current_dir("/")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check={check}: {err}");
        assert!(
            err.contains("colinux-daemon: configuration error: ") && err.contains(&message),
            "check={check}: `{err}` should contain `{message}`"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn windows_port_names_still_dump() {
    // --dump-config shows a Windows configuration as it is (no host check).
    let out = daemon(&["--dump-config", "ttys0=COM1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"COM1\""));
}

#[test]
fn closed_stdout_is_not_a_crash() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_colinux-daemon"))
        .args(["--dump-config", "@multi-nic.conf"])
        .current_dir(fixtures())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn warnings_on_a_pipe_have_no_colour_codes() {
    let out = daemon(&["--dump-config", "mem=64", "mem=65"]);
    let err = text(&out.stderr);
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains('\u{1b}'), "escape codes in {err:?}");
}

/// Whether the tests run as root (the owner of `/proc/self`).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
