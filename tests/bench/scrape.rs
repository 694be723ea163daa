//! Issue 15: scraping proxymgr's status endpoint must not slow it down. A scraper thread GETs a path at a fixed
//! rate (as a Prometheus server would, 10 times a second here) while the convergence scenario runs.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use crate::stats::Samples;
use crate::support;

/// The longest a scraper runs, whatever happens to the scenario it goes along with.
const MAX_RUN: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone)]
pub struct Scraped {
    /// How long each GET took, answer read whole.
    pub took: Samples,
    pub failed: usize,
    /// The size of the last answer.
    pub bytes: usize,
}

impl Scraped {
    /// One GET of `path`, timed.
    fn get(&mut self, address: SocketAddr, path: &str) {
        let t0 = Instant::now();
        match support::fetch(address, path) {
            Some((200, body)) => {
                self.took.push(t0.elapsed());
                self.bytes = body.len();
            }
            _ => self.failed += 1,
        }
    }
}

pub struct Scraper {
    stop: Sender<()>,
    thread: JoinHandle<Scraped>,
}

impl Scraper {
    /// GETs `path` from `address` every `every` until stopped (at most `MAX_RUN`).
    pub fn start(address: SocketAddr, path: &'static str, every: Duration) -> Scraper {
        let (stop, stopped) = bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            let mut scraped = Scraped::default();
            let end = Instant::now() + MAX_RUN;
            let mut next = Instant::now();
            while Instant::now() < end {
                scraped.get(address, path);
                next += every;
                // The pacing of a scraper, not a wait for an event.
                if stopped.recv_timeout(next.saturating_duration_since(Instant::now())).is_ok() {
                    break;
                }
            }
            scraped
        });
        Scraper { stop, thread }
    }

    pub fn stop(self) -> Scraped {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// `path` fetched `times` times on a quiet daemon: how long each took, and the answer's size.
pub fn fetch_times(address: SocketAddr, path: &str, times: usize) -> Scraped {
    let mut scraped = Scraped::default();
    for _ in 0..times {
        scraped.get(address, path);
    }
    scraped
}
