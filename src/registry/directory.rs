//! The `directory` service_config, for setups without ZooKeeper: one JSON file per service in `path`, the
//! file's name (less a `.json` suffix) the service's, its content the same blob as a ZooKeeper node's. Files
//! added, changed (in place or by rename) and removed are picked up at once (`fswatch`), and the directory is
//! read again every second regardless. An entry that cannot be read, is too large or is not a regular file is
//! reported like a bad blob, with the system's error or its real size.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::{Announce, Entry, Registry};
use crate::fswatch::DirWatch;
use crate::service::{SpecError, MAX_BLOB_BYTES};

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
                let entries = files.iter().map(|(name, (path, content))| {
                    Entry::read(name, path.display().to_string(), content.as_deref().map_err(Clone::clone))
                });
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

/// What a service file holds, or why it cannot be had.
type Content = Result<Vec<u8>, SpecError>;

/// Service name -> (file, content) of every file that defines a service. A file that cannot be read, is too
/// large or is not a file is passed on with the reason, to be reported like a bad blob.
fn read(dir: &Path) -> io::Result<BTreeMap<String, (PathBuf, Content)>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = service_name(&file_name.to_string_lossy()) else { continue };
        let path = entry.path();
        if let Some(content) = content(&path) {
            files.insert(name, (path, content));
        }
    }
    Ok(files)
}

/// A service file's content (its target's, for a link); None once it is gone (removed since the listing, or a
/// link to nothing).
fn content(path: &Path) -> Option<Content> {
    let unreadable = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => None,
        _ => Some(Err(SpecError::Unreadable(e.to_string()))),
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => return unreadable(e),
    };
    if let Some(other) = not_a_file(meta.file_type()) {
        return Some(Err(SpecError::NotAFile(other)));
    }
    if meta.len() > MAX_BLOB_BYTES as u64 {
        return Some(Err(SpecError::TooLarge { size: meta.len() }));
    }
    match std::fs::read(path) {
        Ok(data) => Some(Ok(data)),
        Err(e) => unreadable(e),
    }
}

/// What an entry that is not a regular file is instead.
fn not_a_file(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("a device")
    }
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn denied() -> String {
        io::Error::from_raw_os_error(nix::libc::EACCES).to_string()
    }

    #[test]
    fn a_file_that_cannot_be_had_is_passed_on_with_the_real_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("web.json"), "{}").unwrap();
        std::fs::write(path("big.json"), vec![b' '; MAX_BLOB_BYTES + 10]).unwrap();
        std::fs::create_dir(path("sub.json")).unwrap();
        nix::unistd::mkfifo(&path("fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A regular file that even root cannot read: this process's memory, which has nothing at offset 0.
        std::os::unix::fs::symlink("/proc/self/mem", path("mem.json")).unwrap();
        std::os::unix::fs::symlink(path("nowhere"), path("dangling.json")).unwrap();
        std::fs::write(path("locked.json"), "{}").unwrap();
        std::fs::set_permissions(path("locked.json"), std::fs::Permissions::from_mode(0o000)).unwrap();

        let files = read(dir.path()).unwrap();
        let content = |name: &str| files[name].1.clone();
        assert_eq!(content("web"), Ok(b"{}".to_vec()));
        assert_eq!(content("big"), Err(SpecError::TooLarge { size: MAX_BLOB_BYTES as u64 + 10 }));
        assert_eq!(content("sub"), Err(SpecError::NotAFile("a directory")));
        assert_eq!(content("fifo"), Err(SpecError::NotAFile("a FIFO")), "and never opened: that would block");
        let mem = content("mem").unwrap_err().to_string();
        assert!(mem.starts_with("cannot read it: Input/output error"), "{mem}");
        assert!(!files.contains_key("dangling"), "a link to nothing is no file");
        assert_eq!(files["web"].0, path("web.json"));
        // SAFETY: geteuid has no preconditions and cannot fail.
        match unsafe { nix::libc::geteuid() } == 0 {
            true => assert_eq!(content("locked"), Ok(b"{}".to_vec()), "root reads a file of mode 000"),
            false => assert_eq!(content("locked"), Err(SpecError::Unreadable(denied()))),
        }
    }

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
