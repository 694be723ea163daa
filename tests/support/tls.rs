//! TLS for the edge tests: a self-signed certificate made with the `openssl` command, and HTTPS requests made
//! with `curl` (names resolved to a loopback address with `--resolve`, the certificate checked against the one
//! made, HTTP/2 or HTTP/1.1 asked for through ALPN). Tests using them start with `support::require("openssl")`
//! and `support::require("curl")`, and skip when the HAProxy under test has no TLS (`haproxy_has_openssl`).

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{haproxy, wait_or_kill};

/// How long one `openssl` or `curl` run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// A self-signed certificate and its key, in files.
pub struct Certificate {
    /// The certificate and then its key, in one PEM file: what HAProxy's `crt` takes.
    pub pem: PathBuf,
    /// The certificate alone: what a client trusts (`curl --cacert`).
    pub cert: PathBuf,
}

/// Makes a self-signed certificate (P-256, valid two days) for `names` (the first its common name, each a
/// subject alternative name; `*.edge.test` is a wildcard) as `<dir>/<file>.pem` and `<dir>/<file>.crt`.
/// Panics with openssl's output if it fails.
pub fn self_signed(dir: &Path, file: &str, names: &[&str]) -> Certificate {
    let (key, cert, pem) =
        (dir.join(format!("{file}.key")), dir.join(format!("{file}.crt")), dir.join(format!("{file}.pem")));
    let san: Vec<String> = names.iter().map(|name| format!("DNS:{name}")).collect();
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "2", "-subj", &format!("/CN={}", names[0])])
        .args(["-addext", &format!("subjectAltName={}", san.join(","))])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let (ok, stdout, stderr) = run(command);
    assert!(ok, "openssl req -x509 for {names:?} failed:\n{stdout}{stderr}");
    let read = |path: &Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    std::fs::write(&pem, format!("{}{}", read(&cert), read(&key)))
        .unwrap_or_else(|e| panic!("write {}: {e}", pem.display()));
    Certificate { pem, cert }
}

/// Whether `haproxy()` was built with OpenSSL (`haproxy -vv` lists `+OPENSSL` or `USE_OPENSSL=1`), so that
/// `bind ... ssl crt` works. Asked once a test process.
pub fn haproxy_has_openssl() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let mut command = Command::new(haproxy());
        command.arg("-vv");
        let (_, output, _) = run(command);
        output.contains("+OPENSSL") || output.contains("USE_OPENSSL=1")
    })
}

/// What `curl` got for one HTTPS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// curl's `%{http_version}`: `2` for HTTP/2, `1.1` for HTTP/1.1.
    pub http_version: String,
}

/// Which HTTP version `https_get` asks for through ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    Two,
    OneOne,
}

/// `GET https://<host>:<port><path>` with curl, `host` resolved to `address` (`--resolve`), the server's
/// certificate checked against `ca` (so it must be the one made, for `host`), offering `version` through
/// ALPN, within 5 s: the reply, or curl's error.
pub fn https_get(
    host: &str,
    address: IpAddr,
    port: u16,
    path: &str,
    ca: &Path,
    version: Http,
) -> Result<Reply, String> {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "5", "--output", "-"])
        .args(["--write-out", "\n%{http_code} %{http_version}"])
        .arg(match version {
            Http::Two => "--http2",
            Http::OneOne => "--http1.1",
        })
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:{address}")])
        .arg(format!("https://{host}:{port}{path}"));
    let (ok, output, stderr) = run(command);
    if !ok {
        return Err(format!("curl https://{host}:{port}{path}: {}", stderr.trim()));
    }
    let (body, last) =
        output.rsplit_once('\n').ok_or_else(|| format!("no status in curl's output {output:?}"))?;
    let (status, http_version) =
        last.trim().split_once(' ').ok_or_else(|| format!("no status in curl's output {output:?}"))?;
    let status = status.parse().map_err(|_| format!("no status in curl's output {output:?}"))?;
    Ok(Reply { status, body: body.to_string(), http_version: http_version.to_string() })
}

/// Runs `command` (its output small) under `RUN_TIMEOUT`: whether it exited 0, its stdout and its stderr.
fn run(mut command: Command) -> (bool, String, String) {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    // Drain both pipes on threads so that a chatty child cannot block on a full pipe while it is waited for.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_or_kill(&mut child, RUN_TIMEOUT);
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    match status {
        Ok(status) => (status.success(), stdout, stderr),
        Err(e) => (false, stdout, format!("{program}: {e}\n{stderr}")),
    }
}
