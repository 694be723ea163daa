//! Ports for everything the tests start (ZooKeeper, backends, relays, proxymgr's services), handed out so that
//! no two tests, and no two test processes on one machine, ever get the same one.
//!
//! `reserve_port` and `reserved_listener` walk the ports from 20000 up that lie outside the kernel's ephemeral
//! range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default; the kernel picks outgoing
//! connections' source ports and `bind(0)` ports there, so it could hand out such a port any time). They go
//! in blocks of 100: a process takes a block by holding an exclusive `flock` on
//! `/tmp/proxymgr-test-ports/<first port>.lock` until it exits (skipping blocks another process holds), and
//! hands out the block's ports in order, each once. A port is handed out only if a socket without
//! SO_REUSEADDR or SO_REUSEPORT can bind it on 127.0.0.1 right then: anything else bound there, a listener
//! left by a killed run (proxymgr and HAProxy listen with SO_REUSEPORT) or a connection in TIME_WAIT, fails
//! that bind and the port is skipped.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};

/// The first port handed out: well above the ports services commonly use (ZooKeeper's 2181, 8080, ...).
const FIRST_PORT: u32 = 20000;

/// Ports in a block, the unit one process locks. Blocks start at multiples of it.
const BLOCK: u32 = 100;

/// Where the blocks' lock files live: a fixed path, not `$TMPDIR`, so every test process on the machine agrees.
pub const LOCK_DIR: &str = "/tmp/proxymgr-test-ports";

/// The ephemeral range assumed when `/proc` cannot say: Linux's default, and everything above it.
const EPHEMERAL_FALLBACK: (u32, u32) = (32768, 65535);

struct Allocator {
    /// The kernel's ephemeral range, inclusive; no port in it is handed out.
    ephemeral: (u32, u32),
    /// The next port to try, and the end (exclusive) of the block this process holds; equal when it holds none
    /// with ports left.
    next: u32,
    end: u32,
    /// The first port of the next block to try to lock.
    next_block: u32,
    /// The locks of every block taken, held until the process exits.
    locks: Vec<Flock<File>>,
}

static ALLOCATOR: Mutex<Option<Allocator>> = Mutex::new(None);

/// A port on 127.0.0.1 that this process alone will use: nothing is bound to it now, it is outside the kernel's
/// ephemeral range, no other call in this process gets it, and no other test process does. Bind it (or give it
/// to ZooKeeper, HAProxy, ...) whenever; it stays free until then, unless a program outside the tests takes it.
pub fn reserve_port() -> u16 {
    allocate(false).0
}

/// A listener on 127.0.0.1 at a port reserved as `reserve_port`'s are (close-on-exec, like std's).
pub fn reserved_listener() -> TcpListener {
    let (_, fd) = allocate(true);
    TcpListener::from(fd.expect("allocate(true) returns the listening socket"))
}

/// The kernel's ephemeral port range, inclusive.
pub fn ephemeral_range() -> (u32, u32) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = text.split_whitespace().map(str::parse::<u32>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => (low, high),
        _ => EPHEMERAL_FALLBACK,
    }
}

/// The next port that passes the checks, with its socket listening if `listen`, else closed.
fn allocate(listen: bool) -> (u16, Option<OwnedFd>) {
    let mut guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    let allocator = guard.get_or_insert_with(|| {
        let ephemeral = ephemeral_range();
        Allocator { ephemeral, next: 0, end: 0, next_block: FIRST_PORT, locks: Vec::new() }
    });
    loop {
        if allocator.next >= allocator.end {
            allocator.lock_next_block();
            continue;
        }
        let port = allocator.next;
        allocator.next += 1;
        let (low, high) = allocator.ephemeral;
        if (low..=high).contains(&port) {
            continue;
        }
        let port = port as u16;
        if let Some(fd) = bind_exclusively(port, listen) {
            return (port, listen.then_some(fd));
        }
    }
}

impl Allocator {
    /// Locks the next block that has ports outside the ephemeral range and that no other process holds, and
    /// makes it current. Panics when there is none left.
    fn lock_next_block(&mut self) {
        let dir = lock_dir();
        while self.next_block <= u16::MAX as u32 {
            let first = self.next_block;
            let end = (first + BLOCK).min(u16::MAX as u32 + 1);
            self.next_block = end;
            let (low, high) = self.ephemeral;
            if first >= low && end - 1 <= high {
                continue;
            }
            let path = dir.join(format!("{first}.lock"));
            match Flock::lock(open_lock_file(&path), FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    self.locks.push(lock);
                    (self.next, self.end) = (first, end);
                    return;
                }
                // Another test process holds it.
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => panic!("flock {}: {e}", path.display()),
            }
        }
        panic!(
            "no test port left: every block of {BLOCK} ports from {FIRST_PORT} to 65535 outside the ephemeral \
             range {:?} is used up or locked by another test process ({} lists them)",
            self.ephemeral, LOCK_DIR
        );
    }
}

/// `LOCK_DIR`, created world-writable and sticky (as `/tmp`) if missing, so test processes of any user can
/// lock blocks in it.
fn lock_dir() -> PathBuf {
    let dir = PathBuf::from(LOCK_DIR);
    match fs::create_dir(&dir) {
        Ok(()) => {
            // The mode create_dir gives is cut by the umask; set it outright.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))
                .unwrap_or_else(|e| panic!("chmod 1777 {}: {e}", dir.display()));
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("create {}: {e}", dir.display()),
    }
    dir
}

/// Opens (creating if needed) a block's lock file. A file another user created may be read-only to us, which is
/// enough for flock. Close-on-exec (std opens every file so), so no child process inherits the lock.
fn open_lock_file(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
        .or_else(|_| File::open(path))
        .unwrap_or_else(|e| panic!("open {} (remove {LOCK_DIR} if it is not writable): {e}", path.display()))
}

/// Binds a fresh socket to 127.0.0.1:`port` with neither SO_REUSEADDR nor SO_REUSEPORT, so that any other
/// socket on the port (listening, connected or in TIME_WAIT, on 127.0.0.1 or a wildcard address) makes it
/// fail; then listens if `listen`. None if any step fails.
fn bind_exclusively(port: u16, listen: bool) -> Option<OwnedFd> {
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).ok()?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).ok()?;
    if listen {
        socket::listen(&fd, Backlog::MAXCONN).ok()?;
    }
    Some(fd)
}
