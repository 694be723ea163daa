//! A real browser for the tests: Debian's headless Chromium (`chromium-headless-shell`, which `make deps`
//! installs; a full `chromium` on `PATH` does too), run once per call on a page: `dump_dom` gives the DOM as the
//! browser built it, `screenshot` saves a PNG of it (the docs' picture of the status page).
//!
//! Tests start with `if !support::require("chromium") { return; }`, as for any tool; the functions here panic
//! when there is no browser. Each run has a new profile directory, runs with networking beyond the page turned
//! off (no sync, updates or background fetches), and runs in a process group of its own, which is killed once
//! it is done, or when it has not finished within `TIMEOUT` (the test then fails with its stderr): Debian's
//! binary is a shell wrapper that does not `exec`, and Chromium starts helper processes.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The browsers looked for on `PATH`, in order.
pub const BINARIES: [&str; 2] = ["chromium-headless-shell", "chromium"];

/// How long one run may take before it is killed and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The first of `BINARIES` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    BINARIES.iter().find_map(|name| super::find_on_path(name))
}

/// The DOM of the page at `url` once Chromium has loaded it, serialized as HTML (`--dump-dom`).
pub fn dump_dom(url: &str) -> String {
    let run = run(&["--dump-dom".to_string(), url.to_string()]);
    String::from_utf8(run.stdout).unwrap_or_else(|e| panic!("chromium's DOM of {url} is not UTF-8: {e}"))
}

/// Saves a PNG of the page at `url`, in a window of `width` by `height` CSS pixels, to `path` (relative to the
/// test's working directory, the crate's root, when not absolute).
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    let path = std::env::current_dir().expect("the working directory").join(path);
    let _ = std::fs::remove_file(&path);
    let run = run(&[
        format!("--screenshot={}", path.display()),
        format!("--window-size={width},{height}"),
        "--hide-scrollbars".to_string(),
        url.to_string(),
    ]);
    let png = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "chromium wrote no screenshot of {url} to {} ({e}); its stderr:\n{}",
            path.display(),
            run.stderr
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
}

/// What a run that succeeded printed.
struct Run {
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs the browser with the common flags and `args`; panics with its stderr unless it exits 0 within
/// `TIMEOUT`.
fn run(args: &[String]) -> Run {
    let binary = binary().unwrap_or_else(|| {
        panic!("no browser: neither of {BINARIES:?} is on PATH; `make deps` installs chromium-headless-shell")
    });
    let dir = super::temp_dir("proxymgr-chromium-");
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let create =
        |path: &Path| File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut command = Command::new(&binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(create(&stdout_path))
        .stderr(create(&stderr_path))
        .process_group(0);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let outcome = wait_or_kill_group(&mut child, TIMEOUT);
    let stderr = String::from_utf8_lossy(&std::fs::read(&stderr_path).unwrap_or_default()).into_owned();
    let what = format!("{} {}", binary.display(), args.join(" "));
    match outcome {
        Ok(status) if status.success() => {
            Run { stdout: std::fs::read(&stdout_path).expect("read chromium's stdout"), stderr }
        }
        Ok(status) => panic!("{what} failed ({status}); its stderr ends:\n{}", super::tail(&stderr, 4000)),
        Err(e) => panic!("{what}: {e}; its stderr ends:\n{}", super::tail(&stderr, 4000)),
    }
}

/// Waits up to `timeout` for `child`, the leader of its own process group, to exit, then kills what is left of
/// the group (Chromium's helpers, on their way out) so that nothing outlives the run; if it has not exited by
/// then, kills the whole group and says so. The group is killed while its leader is exited but not yet reaped
/// (`WNOWAIT`), so its id cannot have been taken by another process.
fn wait_or_kill_group(child: &mut std::process::Child, timeout: Duration) -> Result<ExitStatus, String> {
    let pid = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + timeout;
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) if Instant::now() >= deadline => {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}; killed it and its process group"));
            }
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => {
                let _ = killpg(pid, Signal::SIGKILL);
                return child.wait().map_err(|e| format!("cannot reap it: {e}"));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}
