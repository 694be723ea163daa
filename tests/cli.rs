//! The command line: the original's `-c/--config` and `-d/--debug`, plus `--help`, `--version` and `--check`
//! for init scripts, with exit codes and errors that name the file and the key, and `proxymgr status` (a Nagios
//! plugin: its exit codes are Nagios').

use std::path::Path;

use crate::support::{self, reserve_port, run_proxymgr};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const GOOD: &str = "haproxy:\n  config_path: /tmp/x/haproxy.cfg\n  global: [\"maxconn 100\"]\n  defaults: [\"mode http\", \"timeout client 1s\", \"timeout server 1s\", \"timeout connect 1s\"]\nservice_config:\n  type: zookeeper\n  servers: 127.0.0.1:2181\n  path: /service_config\n";

#[test]
fn help_and_version() {
    let help = run_proxymgr(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--config", "--debug", "--check", "--version", "status"] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let version = run_proxymgr(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("proxymgr {}", env!("CARGO_PKG_VERSION"))
    );
    let bad = run_proxymgr(&["--no-such-flag"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn check_accepts_a_good_config() {
    if !support::require("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "proxymgr.yml", GOOD);
    let out = run_proxymgr(&["--check", "-c", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"), "{out:?}");
}

#[test]
fn check_names_the_file_and_key_at_fault() {
    if !support::require("haproxy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (GOOD.replace("servers: 127.0.0.1:2181", "servers: 2181"), "service_config.servers"),
        (GOOD.replace("config_path:", "config_pth:"), "unknown field `config_pth`"),
        (GOOD.replace("\"maxconn 100\"", "\"maxconn 100\\nlisten x\""), "haproxy.global[0]"),
        (GOOD.replace("maxconn 100", "no-such-keyword 1"), "haproxy.global: HAProxy rejects them"),
        (
            format!(
                "haproxy:\n  path: /nonexistent/haproxy\n{}",
                &GOOD[GOOD.find("service_config").unwrap()..]
            ),
            "haproxy.path: /nonexistent/haproxy not found",
        ),
    ];
    for (text, expected) in cases {
        let config = write(dir.path(), "bad.yml", &text);
        let out = run_proxymgr(&["--check", "-c", &config]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{text}\n{err}");
        assert!(
            err.contains(&config) && err.contains(expected),
            "expected {config} and {expected:?} in:\n{err}"
        );
    }
    let missing = dir.path().join("missing.yml").display().to_string();
    let out = run_proxymgr(&["-c", &missing]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains(&format!("{missing}: cannot read")), "{}", stderr(&out));
}

#[test]
fn a_missing_haproxy_binary_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("haproxy:\n", "haproxy:\n  path: no-such-haproxy\n");
    let config = write(dir.path(), "proxymgr.yml", &text);
    let out = run_proxymgr(&["-c", &config]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("haproxy.path: no-such-haproxy not found"), "{}", stderr(&out));
}

#[test]
fn an_old_haproxy_is_refused() {
    // A fake stands in for HAProxy 1.4, which cannot be installed here: a script printing its version banner.
    let dir = tempfile::tempdir().unwrap();
    let fake = write(dir.path(), "haproxy", "#!/bin/sh\necho 'HA-Proxy version 1.4.24 2013/06/17'\n");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = GOOD.replace("haproxy:\n", &format!("haproxy:\n  path: {fake}\n"));
    let config = write(dir.path(), "proxymgr.yml", &text);
    let out = run_proxymgr(&["-c", &config]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is HAProxy 1.4.24; proxymgr needs 1.5 or newer"), "{}", stderr(&out));
}

#[test]
fn make_demo_serves_a_request() {
    if !support::require("haproxy") || !support::require("zookeeper") {
        return;
    }
    // make test builds the demo example (cargo build --examples) beside this test binary's directory.
    let exe = std::env::current_exe().unwrap();
    let demo = exe.parent().and_then(Path::parent).map(|d| d.join("examples/demo")).unwrap();
    if !demo.is_file() {
        assert!(
            std::env::var("PROXYMGR_TEST_REQUIRE").as_deref() != Ok("1"),
            "{} is not built",
            demo.display()
        );
        eprintln!("skipping: {} is not built (cargo build --examples builds it)", demo.display());
        return;
    }
    let output = std::process::Command::new(&demo)
        .env("PROXYMGR_BIN", env!("CARGO_BIN_EXE_proxymgr"))
        .env("DEMO_SMOKE", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    assert!(stdout.contains("demo ready"), "{stdout}");
    assert!(stdout.contains("curl http://127.0.0.1:"), "{stdout}");
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `proxymgr status` with nothing to ask: UNKNOWN (3), and the first line says why in the plugin's format,
/// whether -c comes before `status` or after it.
#[test]
fn status_without_an_endpoint_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let off = write(dir.path(), "off.yml", &format!("{GOOD}status: off\n"));
    // A port reserved for this test that nothing listens on: no proxymgr runs there.
    let port = reserve_port();
    let nobody = write(dir.path(), "nobody.yml", &format!("{GOOD}status: 127.0.0.1:{port}\n"));
    let missing = dir.path().join("missing.yml").display().to_string();
    let cases = [
        (vec!["status", "-c", &off], format!("PROXYMGR UNKNOWN - {off}: status: off")),
        (vec!["-c", &off, "status"], format!("PROXYMGR UNKNOWN - {off}: status: off")),
        (
            vec!["status", "--config", &nobody],
            format!("PROXYMGR UNKNOWN - proxymgr is not running or its status endpoint is off at 127.0.0.1:{port}"),
        ),
        (vec!["status", "-c", &missing], format!("PROXYMGR UNKNOWN - {missing}: cannot read")),
    ];
    for (args, expected) in cases {
        let out = run_proxymgr(&args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(3), "proxymgr {}: {text}{}", args.join(" "), stderr(&out));
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with(&expected), "proxymgr {}: {first:?}, not {expected:?}", args.join(" "));
    }
    // Options of the daemon's are refused with it, as any bad command line is (2).
    let out = run_proxymgr(&["--check", "status", "-c", &off]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
