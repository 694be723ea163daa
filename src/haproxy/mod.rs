//! Everything proxymgr does to HAProxy: render its config, hold its listeners, run its processes.
//!
//! `install` is the one way a config reaches the disk: written beside the target, checked by HAProxy with the
//! listeners passed, and only then moved into place. A config HAProxy rejects never becomes haproxy.cfg.

pub mod listeners;
pub mod process;
pub mod render;

use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use process::Binary;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("HAProxy rejected the new config (kept as {kept}): {reason}")]
    Rejected { kept: PathBuf, reason: String },
}

/// Atomically replaces `path` with `text` once `binary` accepts it with `fds` inherited.
pub fn install(binary: &Binary, path: &Path, text: &str, fds: &[RawFd]) -> Result<(), InstallError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write_error = |source| InstallError::Write { path: path.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let mut candidate =
        tempfile::Builder::new().prefix(".haproxy.cfg.").tempfile_in(dir).map_err(write_error)?;
    candidate.write_all(text.as_bytes()).map_err(write_error)?;
    candidate.as_file().sync_all().map_err(write_error)?;
    if let Err(reason) = binary.check(candidate.path(), fds) {
        let kept = rejected_path(path);
        // The file that explains the error is worth more than tidiness; its line numbers match the message.
        let reason = reason.replace(&candidate.path().display().to_string(), &kept.display().to_string());
        candidate.persist(&kept).map_err(|e| InstallError::Write { path: kept.clone(), source: e.error })?;
        return Err(InstallError::Rejected { kept, reason });
    }
    candidate.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

pub fn rejected_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rejected");
    path.with_file_name(name)
}

/// Creates the directory of the stats socket when it is missing (HAProxy does not, and fails to start).
pub fn prepare_socket_dir(socket: &Path) -> std::io::Result<()> {
    match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}
