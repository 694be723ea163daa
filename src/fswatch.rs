//! Waiting for a directory to change, for the `file` watcher and the `directory` service_config: each reads
//! what it follows, then waits here until something in the directory changes or `interval` passes, so that a
//! change is read at once and a missed notification (or a directory that cannot be watched) costs at most one
//! interval.
//!
//! The notifications come from the `notify` crate (inotify on Linux), which reads them on a thread of its own
//! per `DirWatch`. Its handler keeps only the events that can change what the caller reads (not the opens and
//! reads of the caller's own re-reads) and passes them on through a crossbeam channel, so the caller's thread
//! sleeps in one `select!` over them, its stop channel and the interval. A directory that cannot be watched
//! (missing, no inotify instance left) is read every interval and watched once it can be; one removed or
//! moved away is watched again at its path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, RecvError};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// How long a wait gathers the rest of a burst (an editor's save is several events) so that the caller reads
/// once, and reads the file written rather than half of it.
const SETTLE: Duration = Duration::from_millis(10);

/// What notify's thread passes on to the waiting one.
#[derive(Debug, PartialEq)]
enum Change {
    /// Something in the directory changed, or may have (the kernel's event queue overflowed).
    Content,
    /// The directory itself was removed or moved away, and its watch with it.
    Lost,
    /// notify could not read its notifications.
    Failed(String),
}

pub struct DirWatch {
    dir: PathBuf,
    interval: Duration,
    state: State,
    /// Why `dir` is not watched, as last logged, so that a directory missing for an hour is logged once.
    unwatched: Option<String>,
}

enum State {
    /// notify's thread runs; `watching` says whether it holds a watch on the directory now.
    Notify { watcher: RecommendedWatcher, changes: Receiver<Change>, watching: bool },
    /// No watcher (none could be made, or the last one failed); another is tried at `retry`.
    Idle { retry: Instant },
    /// notify's thread could not be created or died: the directory is read every interval, and no other
    /// watcher is tried (see [`runs`] for why one that failed this way cannot be let go of cleanly).
    Rescan,
}

impl DirWatch {
    /// Watches `dir` for files created, written, renamed and removed, before the caller's first read so that
    /// no change after that read is missed. A wait lasts `interval` at most.
    pub fn new(dir: &Path, interval: Duration) -> DirWatch {
        let mut watch = DirWatch {
            dir: dir.to_path_buf(),
            interval,
            state: State::Idle { retry: Instant::now() },
            unwatched: None,
        };
        watch.arm();
        watch
    }

    /// Waits until something in the directory changes or `interval` passes, and says whether to read again:
    /// false when `stop` fired or its sender is gone.
    pub fn wait(&mut self, stop: &Receiver<()>) -> bool {
        if self.arm() {
            // Watched again after a while without: what changed meanwhile was not notified.
            return true;
        }
        let changes = self.changes();
        select! {
            recv(stop) -> _ => false,
            recv(changes) -> change => self.settle(change, stop),
            default(self.interval) => true,
        }
    }

    /// Takes the first change of a burst and the rest that arrive within [`SETTLE`]; false when `stop` fired.
    fn settle(&mut self, first: Result<Change, RecvError>, stop: &Receiver<()>) -> bool {
        let until = Instant::now() + SETTLE;
        let mut next = first;
        loop {
            match next {
                Ok(change) => self.note(change),
                // The handler, and with it the sender, went with notify's thread.
                Err(RecvError) => self.rescan_only(),
            }
            let changes = self.changes();
            select! {
                recv(stop) -> _ => return false,
                recv(changes) -> change => next = change,
                default(until.saturating_duration_since(Instant::now())) => break,
            }
        }
        // A directory removed or moved away may be back at its path already (replaced by a rename): watch it
        // before the caller reads, so that nothing after that read is missed.
        self.arm();
        true
    }

    fn changes(&self) -> Receiver<Change> {
        match &self.state {
            State::Notify { changes, .. } => changes.clone(),
            State::Idle { .. } | State::Rescan => never(),
        }
    }

    fn note(&mut self, change: Change) {
        let State::Notify { watcher, watching, .. } = &mut self.state else { return };
        match change {
            Change::Content => {}
            Change::Lost => {
                // notify keeps following a directory moved away (under its old path): let it go, so that the
                // directory found at the path is the one watched.
                if runs(watcher) {
                    let _ = watcher.unwatch(&self.dir);
                }
                *watching = false;
                self.not_watching("it was removed or moved away".into());
            }
            Change::Failed(e) => {
                log::warn!("watching {} failed ({e}); reading it every interval instead", self.dir.display());
                self.unwatched = Some(e);
                self.discard(Instant::now() + self.interval);
            }
        }
    }

    /// Makes sure the directory is watched if it can be; true when it is watched now and was not before.
    fn arm(&mut self) -> bool {
        let now = Instant::now();
        if let State::Idle { retry } = self.state {
            if now < retry {
                return false;
            }
            match self.start() {
                Ok((watcher, changes)) => self.state = State::Notify { watcher, changes, watching: false },
                Err(e) => {
                    self.state = State::Idle { retry: now + self.interval };
                    self.not_watching(e.to_string());
                    return false;
                }
            }
        }
        let State::Notify { watcher, watching, .. } = &mut self.state else { return false };
        if *watching {
            return false;
        }
        if !runs(watcher) {
            self.rescan_only();
            return false;
        }
        match watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                *watching = true;
                if self.unwatched.take().is_some() {
                    log::debug!("watching {} again", self.dir.display());
                }
                true
            }
            // Tried again at the next wait, an interval later.
            Err(e) => {
                self.not_watching(e.to_string());
                false
            }
        }
    }

    /// A notify watcher whose handler keeps the changes that matter and sends them to the returned receiver.
    fn start(&self) -> notify::Result<(RecommendedWatcher, Receiver<Change>)> {
        // Unbounded: notify's thread must never block on this thread, which waits for its answers in
        // `watch` and `unwatch`.
        let (tx, changes) = crossbeam_channel::unbounded();
        let dir = self.dir.clone();
        let handler = move |event: notify::Result<Event>| {
            let change = match event {
                Ok(event) => classify(&dir, &event),
                Err(e) => Some(Change::Failed(e.to_string())),
            };
            if let Some(change) = change {
                let _ = tx.send(change);
            }
        };
        let watcher = RecommendedWatcher::new(handler, notify::Config::default())?;
        Ok((watcher, changes))
    }

    fn not_watching(&mut self, reason: String) {
        if self.unwatched.as_deref() != Some(&reason) {
            log::debug!("cannot watch {} ({reason}); reading it every interval instead", self.dir.display());
            self.unwatched = Some(reason);
        }
    }

    /// Stops the watcher, and tries another at `retry`.
    fn discard(&mut self, retry: Instant) {
        if let State::Notify { watcher, .. } = std::mem::replace(&mut self.state, State::Idle { retry }) {
            release(watcher);
        }
    }

    /// notify's thread is not running: reads every interval from now on.
    fn rescan_only(&mut self) {
        if let State::Notify { watcher, .. } = std::mem::replace(&mut self.state, State::Rescan) {
            release(watcher);
        }
        log::warn!(
            "cannot watch {}: notify's thread is not running (it could not be created, or it stopped); \
             reading it every {:?} instead",
            self.dir.display(),
            self.interval
        );
        self.unwatched = Some("notify's thread is not running".into());
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        if let State::Notify { watcher, .. } = std::mem::replace(&mut self.state, State::Rescan) {
            release(watcher);
        }
    }
}

/// Whether notify's thread runs. notify's inotify watcher ignores a failure to create its thread, and then
/// unwraps its sends to that thread in `watch`, `unwatch` and `drop`: each would panic. `configure` makes
/// the same round trip but returns the failure, so it is the check before any of them.
fn runs(watcher: &mut RecommendedWatcher) -> bool {
    watcher.configure(notify::Config::default()).is_ok()
}

/// Drops `watcher`, which stops its thread; or, when that thread is not running (and dropping would panic,
/// see [`runs`]), forgets it: its few bytes and its one wake-up descriptor are the price of not panicking, paid
/// once per `DirWatch` since a watch in that state makes no other watcher.
fn release(mut watcher: RecommendedWatcher) {
    if runs(&mut watcher) {
        drop(watcher);
    } else {
        std::mem::forget(watcher);
    }
}

/// The change an event from notify stands for, if it is one the caller must read again for: files created,
/// written (every write and the close after it), renamed or removed. Not opens and closes without writing
/// (the caller's own reads among them) nor metadata changes, which change nothing that is read.
fn classify(dir: &Path, event: &Event) -> Option<Change> {
    if event.need_rescan() {
        return Some(Change::Content);
    }
    let gone =
        matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)));
    if gone && event.paths.iter().any(|path| path == dir) {
        return Some(Change::Lost);
    }
    match event.kind {
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(
            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any | ModifyKind::Other,
        )
        | EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Content),
        EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Metadata(_))
        | EventKind::Any
        | EventKind::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use notify::event::{CreateKind, DataChange, Flag, MetadataKind, RemoveKind};

    use super::*;

    /// Long enough that a wait which returns well before it was woken by a notification.
    const LONG: Duration = Duration::from_secs(30);

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    /// Runs `change` on another thread 50 ms after the wait started, and says how long the wait took. What
    /// notify passes on later (the tail of a burst) is dropped, so that it does not end the next wait.
    fn timed_wait(watch: &mut DirWatch, change: impl FnOnce() + Send + 'static) -> Duration {
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let changer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            change();
        });
        let start = Instant::now();
        assert!(watch.wait(&stop), "not stopped");
        let took = start.elapsed();
        changer.join().expect("the change ran");
        std::thread::sleep(Duration::from_millis(100));
        watch.changes().try_iter().for_each(drop);
        assert!(took >= Duration::from_millis(50), "woken before the change: {took:?}");
        took
    }

    fn is_watching(watch: &DirWatch) -> bool {
        matches!(watch.state, State::Notify { watching: true, .. })
    }

    #[test]
    fn what_is_read_again_for() {
        let dir = "/srv/services";
        let cases = [
            (event(EventKind::Create(CreateKind::File), "/srv/services/web.json"), Some(Change::Content)),
            (event(EventKind::Remove(RemoveKind::File), "/srv/services/web.json"), Some(Change::Content)),
            (
                event(EventKind::Modify(ModifyKind::Data(DataChange::Any)), "/srv/services/web.json"),
                Some(Change::Content),
            ),
            (
                event(EventKind::Modify(ModifyKind::Name(RenameMode::To)), "/srv/services/web.json"),
                Some(Change::Content),
            ),
            (
                event(EventKind::Access(AccessKind::Close(AccessMode::Write)), "/srv/services/web.json"),
                Some(Change::Content),
            ),
            (event(EventKind::Access(AccessKind::Open(AccessMode::Any)), "/srv/services/web.json"), None),
            (event(EventKind::Access(AccessKind::Close(AccessMode::Read)), "/srv/services/web.json"), None),
            (event(EventKind::Access(AccessKind::Open(AccessMode::Any)), dir), None),
            (
                event(EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)), "/srv/services/web.json"),
                None,
            ),
            (Event::new(EventKind::Other).set_flag(Flag::Rescan), Some(Change::Content)),
            (event(EventKind::Remove(RemoveKind::Folder), dir), Some(Change::Lost)),
            (event(EventKind::Modify(ModifyKind::Name(RenameMode::From)), dir), Some(Change::Lost)),
            (
                event(EventKind::Modify(ModifyKind::Name(RenameMode::From)), "/srv/services/web.json"),
                Some(Change::Content),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(classify(Path::new(dir), &event), expected, "{event:?}");
        }
    }

    #[test]
    fn writes_and_renames_wake_a_wait_and_reads_do_not() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("servers.txt");
        fs::write(&file, "127.0.0.1:1\n").expect("write");
        let mut watch = DirWatch::new(dir.path(), LONG);
        assert!(is_watching(&watch));

        let written = file.clone();
        let took = timed_wait(&mut watch, move || fs::write(&written, "127.0.0.1:2\n").expect("write"));
        assert!(took < Duration::from_secs(5), "an in-place write woke the wait after {took:?}");

        let (tmp, replaced) = (dir.path().join("servers.txt.tmp"), file.clone());
        let took = timed_wait(&mut watch, move || {
            fs::write(&tmp, "127.0.0.1:3\n").expect("write");
            fs::rename(&tmp, &replaced).expect("rename");
        });
        assert!(took < Duration::from_secs(5), "a rename over the file woke the wait after {took:?}");

        // Reading is what the caller does after every wake-up: it must not wake the next wait.
        let mut watch = DirWatch::new(dir.path(), Duration::from_millis(500));
        let read = file.clone();
        let took = timed_wait(&mut watch, move || {
            fs::read_to_string(&read).expect("read");
            fs::read_dir(read.parent().expect("a parent")).expect("list").for_each(drop);
        });
        assert!(took >= Duration::from_millis(500), "a read woke the wait after {took:?}");
    }

    #[test]
    fn a_wait_without_changes_lasts_the_interval_and_stop_ends_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut watch = DirWatch::new(dir.path(), Duration::from_millis(100));
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let start = Instant::now();
        assert!(watch.wait(&stop));
        assert!(start.elapsed() >= Duration::from_millis(100));

        let mut watch = DirWatch::new(dir.path(), LONG);
        drop(stop_tx);
        let start = Instant::now();
        assert!(!watch.wait(&stop), "a stop channel whose sender is gone stops");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_missing_directory_is_read_every_interval_and_watched_once_it_exists() {
        let parent = tempfile::tempdir().expect("a temporary directory");
        let dir = parent.path().join("services");
        let mut watch = DirWatch::new(&dir, Duration::from_millis(100));
        assert!(!is_watching(&watch));
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let start = Instant::now();
        assert!(watch.wait(&stop));
        assert!(start.elapsed() >= Duration::from_millis(100), "an interval, not a notification");

        fs::create_dir(&dir).expect("create the directory");
        assert!(watch.wait(&stop), "watched now, so read again at once");
        assert!(is_watching(&watch));
        watch.interval = LONG;
        let file = dir.join("web.json");
        let took = timed_wait(&mut watch, move || fs::write(&file, "{}").expect("write"));
        assert!(took < Duration::from_secs(5), "a new file woke the wait after {took:?}");
    }

    #[test]
    fn a_directory_replaced_by_a_rename_is_watched_at_its_path() {
        let parent = tempfile::tempdir().expect("a temporary directory");
        let dir = parent.path().join("services");
        fs::create_dir(&dir).expect("create the directory");
        let mut watch = DirWatch::new(&dir, LONG);
        assert!(is_watching(&watch));

        let (old, new) = (parent.path().join("services.old"), parent.path().join("services.new"));
        let (dir_, old_, new_) = (dir.clone(), old.clone(), new.clone());
        let took = timed_wait(&mut watch, move || {
            fs::create_dir(&new_).expect("create the new directory");
            fs::rename(&dir_, &old_).expect("move the directory away");
            fs::rename(&new_, &dir_).expect("move the new one in");
        });
        assert!(took < Duration::from_secs(5), "moving the directory away woke the wait after {took:?}");
        if !is_watching(&watch) {
            // That wait ended before the new directory was in place; the next one watches it at once.
            let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
            assert!(watch.wait(&stop));
        }
        assert!(is_watching(&watch), "the directory now at the path is watched");

        // Only the directory at the path: a write in the old one wakes nothing.
        let file = dir.join("web.json");
        let (stale, fresh) = (old.join("web.json"), file.clone());
        let took = timed_wait(&mut watch, move || {
            fs::write(&stale, "{}").expect("write in the old directory");
            std::thread::sleep(Duration::from_millis(300));
            fs::write(&fresh, "{}").expect("write in the new directory");
        });
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(5)).contains(&took),
            "the write in the new directory woke the wait, not the old one: {took:?}"
        );
    }
}
