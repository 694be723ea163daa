//! Bulk reads: the one bounded set of threads that makes a session's calls when many are due at once (at the
//! start, after a reconnect or for a new client every watch is armed again and every tree read whole). The
//! crate's calls block, so only several callers keep several requests in flight on the one connection; at
//! most [`READERS`] of them, the follower included, and no reader starts another, so a session never has more
//! than READERS calls in flight however many trees, and however large, it reads. Helpers exist only while
//! they are needed: a single change is read on the follower thread alone.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::thread;

/// How many threads of a session make calls at once, the follower included. The benchmark's 1000 services
/// of 50 servers are read about as fast with 12 as with more, and each costs a stack while it reads.
pub(super) const READERS: usize = 12;

/// Makes every call of `calls`, and every call their answers lead to, with at most READERS threads calling at
/// once (this one included). `make` runs on any of them; `settle` runs on this thread alone, as answers come
/// in, and returns the calls that follow from each, so what it changes needs no lock. Returns once every call
/// is answered and settled. A panic in `make` or `settle` ends the round and goes on on this thread.
pub(super) fn run<C: Send, A: Send>(
    calls: Vec<C>,
    make: impl Fn(C) -> A + Sync,
    mut settle: impl FnMut(A) -> Vec<C>,
) {
    thread::scope(|scope| {
        // Declared inside the scope: should this thread unwind, dropping `queue_tx` ends the helpers, which
        // the scope then joins.
        let (queue_tx, queue) = crossbeam_channel::unbounded::<C>();
        let (answers_tx, answers) = crossbeam_channel::unbounded::<thread::Result<A>>();
        let make = &make;
        // Calls queued or being made, not settled yet.
        let mut open = 0;
        let mut helpers = 0;
        let mut can_spawn = true;
        let mut next = calls;
        loop {
            open += next.len();
            for call in next {
                let _ = queue_tx.send(call);
            }
            // One thread per open call, up to READERS with this one.
            while can_spawn && helpers + 1 < READERS.min(open) {
                let (queue, answers) = (queue.clone(), answers_tx.clone());
                let helper = thread::Builder::new().name("zk-read".into()).spawn_scoped(scope, move || {
                    for call in queue.iter() {
                        // Every call taken is answered, a panic too, or this thread would wait for it forever.
                        if answers.send(catch_unwind(AssertUnwindSafe(|| make(call)))).is_err() {
                            return;
                        }
                    }
                });
                match helper {
                    Ok(_) => helpers += 1,
                    Err(e) => {
                        // The calls are made all the same, by fewer threads.
                        log::warn!(
                            "cannot create a zk-read thread: {e}; reading with {} threads",
                            helpers + 1
                        );
                        can_spawn = false;
                    }
                }
            }
            // Answers first, so that owners hear as early as possible; then a hand with the calls; then wait.
            let answer = match answers.try_recv() {
                Ok(answer) => answer,
                Err(_) => match queue.try_recv() {
                    Ok(call) => Ok(make(call)),
                    Err(_) if open == 0 => break,
                    Err(_) => match answers.recv() {
                        Ok(answer) => answer,
                        // Not while this thread holds `answers_tx`.
                        Err(_) => break,
                    },
                },
            };
            open -= 1;
            next = settle(answer.unwrap_or_else(|panic| resume_unwind(panic)));
        }
        drop(queue_tx);
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Counts the calls made at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        most: AtomicUsize,
        threads: Mutex<Vec<thread::ThreadId>>,
    }

    impl Gauge {
        fn call(&self, wait: Duration) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.threads.lock().unwrap().push(thread::current().id());
            thread::sleep(wait);
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn many_calls_and_the_calls_they_lead_to_are_made_by_at_most_readers_threads() {
        let gauge = Gauge::default();
        // 40 trees of 30 children: each listing leads to 30 reads.
        let calls: Vec<(u32, Option<u32>)> = (0..40).map(|tree| (tree, None)).collect();
        let mut read = Vec::new();
        run(
            calls,
            |call| {
                gauge.call(Duration::from_millis(1));
                call
            },
            |(tree, child)| match child {
                None => (0..30).map(|child| (tree, Some(child))).collect(),
                Some(child) => {
                    read.push((tree, child));
                    Vec::new()
                }
            },
        );
        assert_eq!(read.len(), 40 * 30, "every call made and settled once");
        read.sort();
        read.dedup();
        assert_eq!(read.len(), 40 * 30);
        let most = gauge.most.load(Ordering::SeqCst);
        assert!(most <= READERS, "{most} calls at once");
        assert!(most > 1, "the calls were shared out");
    }

    #[test]
    fn a_single_call_is_made_on_this_thread() {
        let gauge = Gauge::default();
        let mut settled = 0;
        run(
            vec![()],
            |()| gauge.call(Duration::ZERO),
            |()| {
                settled += 1;
                Vec::new()
            },
        );
        assert_eq!(settled, 1);
        assert_eq!(*gauge.threads.lock().unwrap(), [thread::current().id()]);
    }

    #[test]
    fn no_calls_return_at_once() {
        run(Vec::<()>::new(), |()| unreachable!(), |()| unreachable!());
    }

    #[test]
    #[should_panic(expected = "a helper's call")]
    fn a_panic_in_a_call_reaches_this_thread() {
        run(
            (0..READERS * 2).collect(),
            |n| {
                thread::sleep(Duration::from_millis(1));
                if n == READERS + 1 {
                    panic!("a helper's call");
                }
            },
            |()| Vec::new(),
        );
    }
}
