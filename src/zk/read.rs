//! The readers: the one bounded set of threads that makes a client's calls, so that its follower never makes one
//! itself. The crate's calls block, so only several callers keep several requests in flight on the one
//! connection (at the start, after a reconnect or for a new client every watch is armed again and every tree
//! read whole); and a call can block for good: once in a great while the crate leaves a request unanswered,
//! unsent and unfailed even across its own reconnects (seen in an ensemble test: the first call of a session
//! never returned, the session expired for want of pings, and the crate's new session did not free it). The
//! follower waits for answers with a deadline instead, and replaces a client that stalls.
//!
//! At most [`READERS`] threads per client, started as calls need them and kept for the client's life (idle,
//! they cost a stack they do not touch); dropping the [`Readers`] ends them, but for one stuck in a call, which
//! ends when that call does.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How many threads of a client make calls at once. The benchmark's 1000 services of 50 servers are read about
/// as fast with 12 as with more.
pub(super) const READERS: usize = 12;

/// No answer came for this long while calls were open: the client is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stalled {
    /// How many calls were still open.
    pub open: usize,
}

pub(super) struct Readers<C, A> {
    name: String,
    make: Arc<dyn Fn(C) -> A + Send + Sync>,
    jobs: Sender<C>,
    queue: Receiver<C>,
    answers_tx: Sender<thread::Result<A>>,
    answers: Receiver<thread::Result<A>>,
    threads: usize,
    /// Whether a thread could not be created: the calls are then made by those there are.
    cannot_spawn: bool,
}

impl<C: Send + 'static, A: Send + 'static> Readers<C, A> {
    /// Readers named `name` (their threads' name) that make each call with `make`.
    pub(super) fn new(name: &str, make: impl Fn(C) -> A + Send + Sync + 'static) -> Readers<C, A> {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (answers_tx, answers) = crossbeam_channel::unbounded();
        let make = Arc::new(make);
        Readers {
            name: name.to_string(),
            make,
            jobs,
            queue,
            answers_tx,
            answers,
            threads: 0,
            cannot_spawn: false,
        }
    }

    /// Makes every call of `calls`, and every call their answers lead to, on the readers. `settle` runs on this
    /// thread alone, as answers come in, and returns the calls that follow from each, so what it changes needs
    /// no lock. Returns once every call is answered and settled, or when no answer came for `stall` while calls
    /// were open (the readers are then of no more use: a call of theirs is stuck). A panic in `make` goes on
    /// on this thread.
    pub(super) fn run(
        &mut self,
        calls: Vec<C>,
        mut settle: impl FnMut(A) -> Vec<C>,
        stall: Duration,
    ) -> Result<(), Stalled> {
        let mut open = 0;
        let mut next = calls;
        loop {
            open += next.len();
            for call in next {
                let _ = self.jobs.send(call);
            }
            if open == 0 {
                return Ok(());
            }
            self.hire(open);
            let answer = if self.threads == 0 {
                // Not one thread could be created: the call is made here, as before readers existed.
                let Ok(call) = self.queue.try_recv() else { return Ok(()) };
                Ok((self.make)(call))
            } else {
                match self.answers.recv_timeout(stall) {
                    Ok(answer) => answer,
                    Err(RecvTimeoutError::Timeout) => return Err(Stalled { open }),
                    // Not while this holds `answers_tx`.
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            };
            open -= 1;
            next = settle(answer.unwrap_or_else(|panic| resume_unwind(panic)));
        }
    }

    /// Starts threads until there is one per open call, up to READERS.
    fn hire(&mut self, open: usize) {
        while !self.cannot_spawn && self.threads < READERS.min(open) {
            let (queue, answers, make) = (self.queue.clone(), self.answers_tx.clone(), self.make.clone());
            let spawned = thread::Builder::new().name(self.name.clone()).spawn(move || {
                for call in queue.iter() {
                    // Every call taken is answered, a panic too, or the follower would wait for it until its
                    // deadline.
                    if answers.send(catch_unwind(AssertUnwindSafe(|| make(call)))).is_err() {
                        return;
                    }
                }
            });
            match spawned {
                Ok(_) => self.threads += 1,
                Err(e) => {
                    log::warn!("cannot create a {} thread: {e}; reading with {}", self.name, self.threads);
                    self.cannot_spawn = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    /// Counts the calls made at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        most: AtomicUsize,
        threads: Mutex<BTreeSet<String>>,
    }

    impl Gauge {
        fn call(&self, wait: Duration) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let name = thread::current().name().unwrap_or_default().to_string();
            self.threads.lock().unwrap().insert(name);
            thread::sleep(wait);
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn many_calls_and_the_calls_they_lead_to_are_made_by_at_most_readers_threads() {
        let gauge = Arc::new(Gauge::default());
        let in_calls = gauge.clone();
        let mut readers = Readers::new("zk-read", move |call: (u32, Option<u32>)| {
            in_calls.call(Duration::from_millis(1));
            call
        });
        // 40 trees of 30 children: each listing leads to 30 reads.
        let calls = (0..40).map(|tree| (tree, None)).collect();
        let mut read = Vec::new();
        let settled = readers.run(
            calls,
            |(tree, child)| match child {
                None => (0..30).map(|child| (tree, Some(child))).collect(),
                Some(child) => {
                    read.push((tree, child));
                    Vec::new()
                }
            },
            LONG,
        );
        assert_eq!(settled, Ok(()));
        assert_eq!(read.len(), 40 * 30, "every call made and settled once");
        read.sort();
        read.dedup();
        assert_eq!(read.len(), 40 * 30);
        let most = gauge.most.load(Ordering::SeqCst);
        assert!(most <= READERS, "{most} calls at once");
        assert!(most > 1, "the calls were shared out");
    }

    #[test]
    fn the_follower_makes_no_call_itself_and_a_single_call_takes_one_reader() {
        let gauge = Arc::new(Gauge::default());
        let in_calls = gauge.clone();
        let mut readers = Readers::new("zk-read", move |()| in_calls.call(Duration::ZERO));
        for _ in 0..3 {
            let mut settled = 0;
            let result = readers.run(
                vec![()],
                |()| {
                    settled += 1;
                    Vec::new()
                },
                LONG,
            );
            assert_eq!((result, settled), (Ok(()), 1));
        }
        assert_eq!(*gauge.threads.lock().unwrap(), BTreeSet::from(["zk-read".to_string()]));
        assert_eq!(readers.threads, 1, "the one reader is kept");
    }

    #[test]
    fn no_calls_return_at_once() {
        let mut readers = Readers::new("zk-read", |()| unreachable!());
        assert_eq!(readers.run(Vec::<()>::new(), |()| unreachable!(), LONG), Ok(()));
        assert_eq!(readers.threads, 0);
    }

    #[test]
    fn a_call_that_never_returns_stalls_the_round_at_its_deadline() {
        let (release, stuck) = crossbeam_channel::bounded::<()>(0);
        let stuck = Mutex::new(stuck);
        let mut readers = Readers::new("zk-read", move |n: u32| {
            if n == 0 {
                // The crate's stuck call: it returns only when the test lets it.
                let _ = stuck.lock().unwrap().recv();
            }
            n
        });
        let started = Instant::now();
        let mut answered = Vec::new();
        let result = readers.run(
            vec![0, 1, 2],
            |n| {
                answered.push(n);
                Vec::new()
            },
            Duration::from_millis(200),
        );
        assert_eq!(result, Err(Stalled { open: 1 }));
        answered.sort();
        assert_eq!(answered, [1, 2], "the other calls were answered and settled");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // The stuck reader ends once its call does, even with the readers gone.
        drop(readers);
        drop(release);
    }

    #[test]
    #[should_panic(expected = "a reader's call")]
    fn a_panic_in_a_call_reaches_the_follower() {
        let mut readers = Readers::new("zk-read", |n: usize| {
            thread::sleep(Duration::from_millis(1));
            if n == READERS + 1 {
                panic!("a reader's call");
            }
        });
        let _ = readers.run((0..READERS * 2).collect(), |()| Vec::new(), LONG);
    }
}
