//! `proxymgr status [-c FILE]`: asks the proxymgr running on that proxymgr.yml for its status (at its `status:`
//! address) and prints the verdict's line, then the table. A Nagios plugin: the exit code is the verdict's
//! level (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), not one of the daemon's codes, and the first line always
//! starts `PROXYMGR <LEVEL> - `, also when there is no status to judge (UNKNOWN, saying why).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;

use super::check::{self, Level};
use super::client::{self, FetchError};
use super::model::Status;

/// How long the whole request may take: the endpoint answers from memory at once, so a proxymgr that has not
/// answered by then is in trouble, and Nagios' own plugin timeout is 10 s by default.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Prints the report for the proxymgr `config` configures; returns the exit code.
pub fn run(config: &Path) -> u8 {
    let (level, text) = report(config, |address| client::fetch(address, FETCH_TIMEOUT), super::now_unix());
    print!("{text}");
    level.code()
}

/// The level and the text: the verdict's line, then a blank line and the table when there is a status.
fn report(
    file: &Path,
    fetch: impl FnOnce(SocketAddr) -> Result<Status, FetchError>,
    now_unix: f64,
) -> (Level, String) {
    let unknown = |reason: String| (Level::Unknown, format!("{}\n", check::unknown_line(&reason)));
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => return unknown(e.to_string()),
    };
    let Some(address) = config.status.0 else {
        return unknown(format!("{}: status: off: proxymgr serves no status to ask", file.display()));
    };
    let status = match fetch(address) {
        Ok(status) => status,
        Err(e) if e.is_refused() => {
            return unknown(format!("proxymgr is not running or its status endpoint is off at {address}"))
        }
        Err(e) => return unknown(e.to_string()),
    };
    let verdict = check::verdict(&status, now_unix);
    let text = format!("{}\n\n{}", verdict.first_line(), check::table(&status, now_unix));
    (verdict.level, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    const NOW: f64 = 1_700_000_000.0;

    const CONFIG: &str = "service_config:\n  type: directory\n  path: /etc/proxymgr/services\n";

    fn refused(address: SocketAddr) -> Result<Status, FetchError> {
        Err(FetchError::Connect { address, source: io::ErrorKind::ConnectionRefused.into() })
    }

    fn timeout(address: SocketAddr) -> Result<Status, FetchError> {
        Err(FetchError::Timeout { address, timeout: FETCH_TIMEOUT })
    }

    fn starting(_: SocketAddr) -> Result<Status, FetchError> {
        Ok(Status::default())
    }

    fn well(_: SocketAddr) -> Result<Status, FetchError> {
        Ok(Status {
            published: NOW - 1.0,
            started: NOW - 60.0,
            haproxy: Some(crate::status::Serving { pid: 7, version: "2.6.12".into(), since: NOW - 60.0 }),
            ..Default::default()
        })
    }

    fn unreachable(_: SocketAddr) -> Result<Status, FetchError> {
        panic!("nothing is to be fetched")
    }

    #[test]
    fn reports() {
        type Fetch = fn(SocketAddr) -> Result<Status, FetchError>;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write the config");
            path
        };
        let default = file("default.yml", CONFIG);
        let off = file("off.yml", &format!("{CONFIG}status: off\n"));
        let elsewhere = file("elsewhere.yml", &format!("{CONFIG}status: 127.0.0.1:20999\n"));
        let broken = file("broken.yml", "status: [\n");
        let missing = dir.path().join("missing.yml");
        let name = |path: &Path| path.display().to_string();
        // Each: the config, what the fetch gives, the level, how the first line starts, and whether a table follows.
        let cases: Vec<(&Path, Fetch, Level, String, bool)> = vec![
            (
                &missing,
                unreachable,
                Level::Unknown,
                format!("PROXYMGR UNKNOWN - {}: cannot read: ", name(&missing)),
                false,
            ),
            (&broken, unreachable, Level::Unknown, format!("PROXYMGR UNKNOWN - {}: ", name(&broken)), false),
            (
                &off,
                unreachable,
                Level::Unknown,
                format!("PROXYMGR UNKNOWN - {}: status: off: proxymgr serves no status to ask", name(&off)),
                false,
            ),
            (
                &default,
                refused,
                Level::Unknown,
                "PROXYMGR UNKNOWN - proxymgr is not running or its status endpoint is off at 127.0.0.1:9271"
                    .into(),
                false,
            ),
            (
                &elsewhere,
                refused,
                Level::Unknown,
                "PROXYMGR UNKNOWN - proxymgr is not running or its status endpoint is off at 127.0.0.1:20999"
                    .into(),
                false,
            ),
            (
                &default,
                timeout,
                Level::Unknown,
                "PROXYMGR UNKNOWN - 127.0.0.1:9271: no answer within 5s".into(),
                false,
            ),
            (&default, starting, Level::Unknown, "PROXYMGR UNKNOWN - nothing published yet".into(), true),
            (
                &default,
                well,
                Level::Ok,
                "PROXYMGR OK - 0 services, 0 servers in rotation | services=0".into(),
                true,
            ),
        ];
        for (config, fetch, level, start, table) in cases {
            let (got, text) = report(config, fetch, NOW);
            let first = text.lines().next().unwrap_or_default();
            assert_eq!(got, level, "{}: {text}", config.display());
            assert!(first.starts_with(&start), "{}: {first:?} starts with {start:?}", config.display());
            assert!(text.ends_with('\n'), "{text:?}");
            if table {
                assert!(text.contains("\n\nproxymgr "), "the table follows the line: {text}");
            } else {
                assert_eq!(text.lines().count(), 1, "one line without a status: {text}");
            }
        }
    }
}
