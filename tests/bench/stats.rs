//! Samples and their summaries: nearest-rank percentiles, and the figures the report prints.

use std::fmt;
use std::time::Duration;

/// A set of durations, kept in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    us: Vec<u64>,
    /// Samples that never converged within their deadline: they count as a miss, not as a number.
    pub timeouts: usize,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, d: Duration) {
        self.us.push(d.as_micros() as u64);
    }

    pub fn push_us(&mut self, us: u64) {
        self.us.push(us);
    }

    pub fn extend(&mut self, other: &Samples) {
        self.us.extend_from_slice(&other.us);
        self.timeouts += other.timeouts;
    }

    pub fn len(&self) -> usize {
        self.us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.us.is_empty()
    }

    /// The nearest-rank percentile `p` (0-100), in microseconds.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.us.is_empty() {
            return None;
        }
        let mut sorted = self.us.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn p50(&self) -> Option<u64> {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> Option<u64> {
        self.percentile(99.0)
    }

    pub fn max(&self) -> Option<u64> {
        self.us.iter().copied().max()
    }

    pub fn min(&self) -> Option<u64> {
        self.us.iter().copied().min()
    }

    /// `p50 / p99 / max (min, n)` with a unit chosen for the magnitude, or `no samples`.
    pub fn summary(&self) -> String {
        let Some(p50) = self.p50() else {
            return if self.timeouts > 0 {
                format!("none converged ({} timed out)", self.timeouts)
            } else {
                "no samples".to_string()
            };
        };
        let mut text = format!(
            "{} / {} / {} (min {}, n={})",
            Us(p50),
            Us(self.p99().unwrap_or(0)),
            Us(self.max().unwrap_or(0)),
            Us(self.min().unwrap_or(0)),
            self.len()
        );
        if self.timeouts > 0 {
            text.push_str(&format!(", {} timed out", self.timeouts));
        }
        text
    }
}

/// Microseconds, printed as µs, ms or s.
#[derive(Debug, Clone, Copy)]
pub struct Us(pub u64);

impl fmt::Display for Us {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us < 1_000 {
            write!(f, "{us} µs")
        } else if us < 10_000 {
            write!(f, "{:.2} ms", us as f64 / 1e3)
        } else if us < 1_000_000 {
            write!(f, "{:.0} ms", us as f64 / 1e3)
        } else {
            write!(f, "{:.2} s", us as f64 / 1e6)
        }
    }
}

/// `a / b` as `12×` (or `0.8×`, or `1/105×` below a tenth), `-` when either is missing or b is 0.
pub fn ratio(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => {
            let r = a as f64 / b as f64;
            if r >= 10.0 {
                format!("{r:.0}×")
            } else if r > 0.0 && r < 0.1 {
                // Two decimals would say 0.0×: the baseline's figure is that many times smaller.
                format!("1/{:.0}×", 1.0 / r)
            } else {
                format!("{r:.1}×")
            }
        }
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::new();
        for v in 1..=100 {
            s.push_us(v);
        }
        assert_eq!(s.p50(), Some(50));
        assert_eq!(s.p99(), Some(99));
        assert_eq!(s.max(), Some(100));
    }
}
