//! Waiting for a directory to change: inotify where it works, with a re-read every `interval` regardless, so
//! that a missed or unsupported notification costs at most one interval. Used by the `file` watcher and the
//! `directory` service_config.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// How often a wait looks at its stop channel.
const SLICE: Duration = Duration::from_millis(100);

pub struct DirWatch {
    inotify: Option<Inotify>,
}

impl DirWatch {
    /// Watches `dir` for files created, written, moved and deleted. A directory that cannot be watched (it
    /// does not exist yet, say) is polled instead, and watched once it can be.
    pub fn new(dir: &Path) -> DirWatch {
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .and_then(|inotify| inotify.add_watch(dir, flags).map(|_| inotify));
        match inotify {
            Ok(inotify) => DirWatch { inotify: Some(inotify) },
            Err(e) => {
                log::debug!("cannot watch {} ({e}); reading it every interval instead", dir.display());
                DirWatch { inotify: None }
            }
        }
    }

    pub fn is_watching(&self) -> bool {
        self.inotify.is_some()
    }

    /// Waits until something in the directory changes or `interval` passes. Returns false when `stop` fired
    /// or its sender is gone.
    pub fn wait(&self, interval: Duration, stop: &Receiver<()>) -> bool {
        let deadline = Instant::now() + interval;
        loop {
            match stop.try_recv() {
                Err(TryRecvError::Empty) => {}
                _ => return false,
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            let slice = SLICE.min(deadline - now);
            match &self.inotify {
                Some(inotify) => {
                    let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                    let timeout = PollTimeout::try_from(slice).unwrap_or(PollTimeout::ZERO);
                    if poll(&mut fds, timeout).is_ok_and(|n| n > 0) {
                        // Drain the burst (an editor's save is several events) before reading once.
                        std::thread::sleep(Duration::from_millis(10));
                        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
                        return true;
                    }
                }
                None => std::thread::sleep(slice),
            }
        }
    }
}
