//! The `file` watcher: one `host:port` per line (`[v6]:port` for IPv6), blank lines and `#` comments ignored.
//! Re-read at once when the file changes (its directory is watched, so an atomic replace is seen too) and every
//! `interval` regardless. A missing or unreadable file keeps the last set; a bad line is skipped and logged
//! with its file and line number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::Report;
use crate::fswatch::DirWatch;
use crate::service::Server;

/// A servers file larger than this is not one.
const MAX_BYTES: u64 = 16 << 20;

pub fn run(file: PathBuf, interval: Duration, mut report: Report, stop: Receiver<()>) {
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut watch = DirWatch::new(&dir, interval);
    // What was last read (to log a bad line once, not at every re-read) and the last read error.
    let (mut last_text, mut last_error): (Option<String>, Option<String>) = (None, None);
    let mut servers: Vec<Server> = Vec::new();
    loop {
        match read(&file) {
            Ok(text) => {
                if last_error.take().is_some() {
                    log::info!("service {}: {} is readable again", report.service(), file.display());
                }
                if last_text.as_deref() != Some(&text) {
                    servers = parse(&file, &text, report.service());
                    last_text = Some(text);
                }
                report.send(servers.clone());
            }
            Err(e) => {
                let error = e.to_string();
                if last_error.as_deref() != Some(&error) {
                    log::error!(
                        "service {}: cannot read {}: {error}; keeping the last {} server(s)",
                        report.service(),
                        file.display(),
                        servers.len()
                    );
                    last_error = Some(error);
                }
            }
        }
        if !watch.wait(&stop) {
            return;
        }
    }
}

fn read(file: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(file)?;
    if meta.len() > MAX_BYTES {
        return Err(std::io::Error::other(format!("{} bytes is over the limit of {MAX_BYTES}", meta.len())));
    }
    std::fs::read_to_string(file)
}

/// The servers of a file's text; bad lines are logged and skipped.
fn parse(file: &Path, text: &str, service: &str) -> Vec<Server> {
    let mut servers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match Server::parse_endpoint(line) {
            Ok(server) => servers.push(server),
            Err(e) => log::error!("service {service}: {}:{}: {e}; skipped", file.display(), i + 1),
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_bad_entries() {
        let text = "# servers\n\n127.0.0.1:9001\n  10.0.0.2:80  # the other\nnonsense\n127.0.0.1:99999\n[::1]:9003\n::1:9004\n";
        let servers = parse(Path::new("/etc/s.txt"), text, "web");
        let names: Vec<String> = servers.iter().map(Server::endpoint).collect();
        assert_eq!(names, ["127.0.0.1:9001", "10.0.0.2:80", "[::1]:9003"]);
    }
}
