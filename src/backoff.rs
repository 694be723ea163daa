//! One exponential backoff for everything proxymgr retries: a HAProxy that died, a ZooKeeper client that
//! cannot connect. It starts at `min`, doubles on each failure up to `max`, and goes back to `min` once the
//! thing it guards has worked (`reset`).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, next: min }
    }

    /// How long to wait before the next try (without counting a failure).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// A failure: how long to wait before the next try; the wait after it doubles, up to `max`.
    pub fn fail(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// It worked: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_its_bound_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(200), ms(1000));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.fail()).collect();
        assert_eq!(waits, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(backoff.peek(), ms(1000));
        backoff.reset();
        assert_eq!(backoff.fail(), ms(200));
    }
}
