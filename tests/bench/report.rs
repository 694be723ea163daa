//! The results: rows grouped by section, printed as Markdown to stdout and written to `target/bench/results.md`.

use std::fmt::Write as _;
use std::time::Instant;

use crate::stats::{ratio, Samples, Us};

pub struct Row {
    pub what: String,
    pub proxymgr: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub verdict: String,
}

pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub struct Report {
    pub context: Vec<String>,
    pub sections: Vec<Section>,
    pub failures: Vec<String>,
    started: Instant,
}

impl Report {
    pub fn new() -> Report {
        Report { context: Vec::new(), sections: Vec::new(), failures: Vec::new(), started: Instant::now() }
    }

    pub fn section(&mut self, title: &str) -> &mut Section {
        self.sections.push(Section { title: title.to_string(), rows: Vec::new(), notes: Vec::new() });
        self.sections.last_mut().expect("just pushed")
    }

    /// A progress line on stderr, with the time since the start.
    pub fn progress(&self, text: &str) {
        eprintln!("bench [{:>6.1} s] {text}", self.started.elapsed().as_secs_f64());
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("## Results\n\n");
        for line in &self.context {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out, "- whole run: {:.0} s", self.started.elapsed().as_secs_f64());
        out.push('\n');
        out.push_str(
            "Durations read `p50 / p99 / max (min, n)`. \"ratio\" is the baseline's figure over proxymgr's (p50 \
             unless it says otherwise): how many times slower, or how many more, the baseline is.\n\n",
        );
        for section in &self.sections {
            let _ = writeln!(out, "### {}\n", section.title);
            if !section.rows.is_empty() {
                out.push_str(
                    "| measure | proxymgr | reload baseline | ratio | target (DESIGN §6) | verdict |\n",
                );
                out.push_str("|---|---|---|---|---|---|\n");
                for r in &section.rows {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} |",
                        r.what, r.proxymgr, r.baseline, r.ratio, r.target, r.verdict
                    );
                }
                out.push('\n');
            }
            for note in &section.notes {
                let _ = writeln!(out, "- {note}");
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        if !self.failures.is_empty() {
            out.push_str("### Failures\n\n");
            for f in &self.failures {
                let _ = writeln!(out, "- {f}");
            }
            out.push('\n');
        }
        out
    }
}

impl Section {
    pub fn row(
        &mut self,
        what: &str,
        proxymgr: String,
        baseline: String,
        ratio: String,
        target: &str,
        verdict: String,
    ) {
        self.rows.push(Row {
            what: what.to_string(),
            proxymgr,
            baseline,
            ratio,
            target: target.to_string(),
            verdict,
        });
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// A row of two sample sets with the p50 ratio, judged against p50/p99 limits (µs) when given.
    pub fn samples(
        &mut self,
        what: &str,
        pm: &Samples,
        base: &Samples,
        target: &str,
        limits: Option<(u64, u64)>,
    ) {
        let verdict = match limits {
            Some((p50, p99)) => judge(pm, p50, p99),
            None => "-".to_string(),
        };
        self.row(what, pm.summary(), base.summary(), ratio(base.p50(), pm.p50()), target, verdict);
    }
}

/// "met", or "MISSED" with by how much, for p50 ≤ `p50_max` and p99 ≤ `p99_max` (µs).
pub fn judge(samples: &Samples, p50_max: u64, p99_max: u64) -> String {
    let (Some(p50), Some(p99)) = (samples.p50(), samples.p99()) else {
        return "not measured".to_string();
    };
    let mut misses = Vec::new();
    if p50 > p50_max {
        misses.push(format!("p50 {} > {} ({:.1}×)", Us(p50), Us(p50_max), p50 as f64 / p50_max as f64));
    }
    if p99 > p99_max {
        misses.push(format!("p99 {} > {} ({:.1}×)", Us(p99), Us(p99_max), p99 as f64 / p99_max as f64));
    }
    if samples.timeouts > 0 {
        misses.push(format!("{} timed out", samples.timeouts));
    }
    if misses.is_empty() {
        "met".to_string()
    } else {
        format!("**MISSED**: {}", misses.join(", "))
    }
}
