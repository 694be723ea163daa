//! The `directory` service_config, for setups without ZooKeeper: one JSON file per service in `path`, the
//! file's name (less a `.json` suffix) the service's, its content the same blob as a ZooKeeper node's. Files
//! added, changed (in place or by rename) and removed are picked up at once (`fswatch`), and the directory is
//! read again every second regardless.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{Announce, Entry, Registry};
use crate::fswatch::DirWatch;
use crate::service::MAX_BLOB_BYTES;

const RESCAN: Duration = Duration::from_secs(1);

/// Follows `dir` until `stop` fires, sending [`Event::Services`] whenever the set changes.
pub fn run(dir: PathBuf, announce: Announce, stop: Receiver<()>) {
    log::info!("service_config: following directory {}", dir.display());
    let mut registry = Registry::default();
    let mut watch = DirWatch::new(&dir, RESCAN);
    let mut last_error: Option<String> = None;
    loop {
        match read(&dir) {
            Ok(files) => {
                last_error = None;
                let entries = files
                    .iter()
                    .map(|(name, (path, data))| Entry::parse(name, path.display().to_string(), data));
                if let Some(services) = registry.update(entries) {
                    announce.send(services);
                }
            }
            Err(e) => {
                // Like a ZooKeeper outage: keep what is served, say so once.
                let error = e.to_string();
                if last_error.as_deref() != Some(&error) {
                    log::error!(
                        "service_config: cannot read {}: {error}; keeping the services as they are",
                        dir.display()
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

/// Service name -> (file, content) of every file that defines a service. A file too large or unreadable is
/// passed on as data that fails to parse, so that it is reported like any bad blob.
fn read(dir: &Path) -> std::io::Result<BTreeMap<String, (PathBuf, Vec<u8>)>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = service_name(&file_name.to_string_lossy()) else { continue };
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let data = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_BLOB_BYTES as u64 => vec![b' '; MAX_BLOB_BYTES + 1],
            _ => match std::fs::read(&path) {
                Ok(data) => data,
                // Deleted between the listing and the read: it is gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => format!("unreadable: {e}").into_bytes(),
            },
        };
        files.insert(name, (path, data));
    }
    Ok(files)
}

/// The service a file defines: its name less `.json`; none for hidden files and editors' leftovers.
fn service_name(file: &str) -> Option<String> {
    let skip =
        file.starts_with('.') || file.ends_with('~') || file.ends_with(".swp") || file.ends_with(".tmp");
    if skip {
        return None;
    }
    Some(file.strip_suffix(".json").unwrap_or(file).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_from_file_names() {
        assert_eq!(service_name("web.json").as_deref(), Some("web"));
        assert_eq!(service_name("web").as_deref(), Some("web"));
        assert_eq!(service_name("bad name").as_deref(), Some("bad name"), "checked later, and reported");
        for skipped in [".web.json", "web.json~", "web.json.swp", "web.tmp"] {
            assert_eq!(service_name(skipped), None, "{skipped}");
        }
    }
}
