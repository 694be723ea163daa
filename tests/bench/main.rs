//! `make bench`: proxymgr against regenerate-and-reload, side by side in one run, on a real ZooKeeper and real
//! HAProxy on loopback, held to the targets in DESIGN.md §6. BENCHMARKS.md describes the method.
//!
//! Phases (each with its own ZooKeeper, each mode on the same tree, proxymgr first):
//! - `small` (10 services × 5 servers): runtime-state convergence, reload to serving for a new service, failed
//!   requests across reloads under load (connection-close and keep-alive clients);
//! - `churn` (100 services × 10 servers): 100 server changes per second, then reload to serving at 100 services;
//! - `storm` (100 services × 20 servers): 20 new services 0.5 s apart while clients hold connections through
//!   every HAProxy: processes alive at once, their summed memory, each new service's delay; drawn into
//!   `docs/storm.svg` when both sides ran;
//! - `routing` (50 services on one shared HTTP frontend, routed by host): 100 routing changes (a host moved,
//!   added, removed) under load, each until a request for that host reaches its new service; HAProxy starts
//!   and failed requests meanwhile (routing.rs);
//! - `large` (1000 services × 50 servers): cold start, idle CPU, peak RSS, convergence, reload to serving, and
//!   proxymgr's plan/render times for a one-service change.
//!
//! Environment: `BENCH_QUICK=1` runs the small phase, a 10 s churn and 30 routing changes at 20 services with
//! fewer samples (a minute or two); `BENCH_ONLY=small,churn,storm,routing,large` picks phases; `PROXYMGR_BIN`
//! the daemon (default: target/release/proxymgr); `PROXYMGR_TEST_KEEP=1` keeps every temporary directory
//! (configs, logs). Progress goes to stderr, the results (Markdown) to stdout and `target/bench/results.md`.

#[path = "../support/mod.rs"]
mod support;

mod baseline;
mod haproxy;
mod plot;
mod report;
mod routing;
mod scenarios;
mod scrape;
mod stats;
mod target;
mod topo;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use report::{judge, Report};
use scenarios::{ColdStart, Convergence, LoadRun, StormRun};
use stats::{ratio, Samples, Us};
use support::{http_get, wait_until, Backend, Zk};
use target::{Mode, Target};
use topo::{service_blob, Topo, SERVER_ROOT, SERVICE_ROOT};

/// The modes to run: both, unless `BENCH_MODES=proxymgr` or `BENCH_MODES=reload` (for profiling one side; the
/// other's columns stay empty).
fn modes() -> Vec<Mode> {
    match std::env::var("BENCH_MODES").as_deref() {
        Ok("proxymgr") => vec![Mode::Proxymgr],
        Ok("reload") => vec![Mode::Reload],
        _ => vec![Mode::Proxymgr, Mode::Reload],
    }
}

/// `map[mode]`, or an empty result when that mode did not run.
fn of<T: Default + Clone>(map: &BTreeMap<Mode, T>, mode: Mode) -> T {
    map.get(&mode).cloned().unwrap_or_default()
}

/// How many samples each phase takes.
struct Plan {
    quick: bool,
    phases: Vec<String>,
    small_rounds: usize,
    small_new: usize,
    load_reloads: usize,
    churn_window: Duration,
    churn_new: usize,
    large_rounds: usize,
    large_new: usize,
    idle_window: Duration,
    routing_services: usize,
    routing_changes: usize,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
        let phases = match std::env::var("BENCH_ONLY") {
            Ok(only) if !only.trim().is_empty() => only.split(',').map(|p| p.trim().to_string()).collect(),
            _ if quick => vec!["small".into(), "churn".into(), "routing".into()],
            _ => vec!["small".into(), "churn".into(), "storm".into(), "routing".into(), "large".into()],
        };
        if quick {
            Plan {
                quick,
                phases,
                small_rounds: 20,
                small_new: 5,
                load_reloads: 20,
                churn_window: Duration::from_secs(10),
                churn_new: 3,
                large_rounds: 5,
                large_new: 2,
                idle_window: Duration::from_secs(10),
                routing_services: 20,
                routing_changes: 30,
            }
        } else {
            Plan {
                quick,
                phases,
                small_rounds: 50,
                small_new: 20,
                load_reloads: 100,
                churn_window: Duration::from_secs(60),
                churn_new: 10,
                large_rounds: 20,
                large_new: 5,
                idle_window: Duration::from_secs(30),
                routing_services: 50,
                routing_changes: 100,
            }
        }
    }
}

fn main() -> ExitCode {
    // haproxy is in /usr/sbin, which a non-root PATH lacks on Debian (the Makefile adds it too).
    let path = std::env::var("PATH").unwrap_or_default();
    if !path.split(':').any(|p| p == "/usr/sbin") {
        std::env::set_var("PATH", format!("{path}:/usr/sbin:/sbin"));
    }
    if std::env::var_os("PROXYMGR_BIN").is_none() {
        let release = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/proxymgr");
        std::env::set_var("PROXYMGR_BIN", &release);
    }
    for tool in ["zookeeper", "haproxy"] {
        if !support::require(tool) {
            eprintln!("bench: {tool} is missing; `make deps` installs it");
            return ExitCode::FAILURE;
        }
    }
    let bin = support::proxymgr_bin();
    if !bin.is_file() {
        eprintln!("bench: {} does not exist; `make bench` builds it (cargo build --release)", bin.display());
        return ExitCode::FAILURE;
    }

    let plan = Plan::from_env();
    let mut report = Report::new();
    context(&mut report, &plan, &bin);
    let backends = vec![Backend::start("a"), Backend::start("b")];
    for phase in plan.phases.clone() {
        report.context.push(format!("load average before `{phase}`: {}", loadavg()));
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match phase.as_str() {
            "small" => small(&plan, &backends, &mut report),
            "churn" => churn(&plan, &backends, &mut report),
            "storm" => storm(&backends, &mut report),
            "routing" => routing::phase(plan.routing_services, plan.routing_changes, &backends, &mut report),
            "large" => large(&plan, &backends, &mut report),
            other => report.failures.push(format!("unknown phase {other:?} in BENCH_ONLY")),
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let message: String = message.chars().take(2000).collect();
            report.failures.push(format!("phase `{phase}` failed: {message}"));
        }
    }
    report.context.push(format!("load average at the end: {}", loadavg()));

    let markdown = report.markdown();
    println!("{markdown}");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench");
    let file = dir.join("results.md");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &markdown)) {
        Ok(()) => eprintln!("bench: results written to {}", file.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", file.display()),
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn context(report: &mut Report, plan: &Plan, bin: &std::path::Path) {
    let run = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(if o.stdout.is_empty() { &o.stderr } else { &o.stdout })
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|e| format!("({program}: {e})"))
    };
    let first_line = |text: String| text.lines().next().unwrap_or_default().to_string();
    report.context.push(format!("date: {}", run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])));
    report.context.push(format!(
        "machine: {} CPUs ({}), {} MiB RAM, Linux {}",
        run("nproc", &[]),
        first_line(run("sh", &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])),
        run("sh", &["-c", "awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo"]),
        run("uname", &["-r"])
    ));
    report.context.push(format!("HAProxy: {}", first_line(run("haproxy", &["-v"]))));
    let manifest = env!("CARGO_MANIFEST_DIR");
    let commit = run("git", &["-C", manifest, "rev-parse", "--short", "HEAD"]);
    let dirty = !run("git", &["-C", manifest, "status", "--porcelain", "--", "src"]).is_empty();
    report.context.push(format!(
        "proxymgr: {} at commit {commit}{} ({})",
        bin.display(),
        if dirty { " with uncommitted changes in src/" } else { "" },
        first_line(run(&bin.display().to_string(), &["--version"]))
    ));
    report.context.push(first_line(run("rustc", &["-V"])));
    report.context.push(format!(
        "plan: {} (phases {})",
        if plan.quick { "BENCH_QUICK=1, fewer samples" } else { "full" },
        plan.phases.join(", ")
    ));
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Starts a ZooKeeper and records its version.
fn start_zk(report: &mut Report) -> Zk {
    let zk = Zk::start();
    if !report.context.iter().any(|c| c.starts_with("ZooKeeper")) {
        let version = zk
            .four_letter("srvr")
            .and_then(|s| s.lines().next().map(|l| l.trim_start_matches("Zookeeper version: ").to_string()))
            .unwrap_or_default();
        report.context.push(format!("ZooKeeper {version}"));
    }
    zk
}

/// Starts `mode` and measures its cold start on `topo`; panics (failing the phase) if it never serves.
fn start_target(mode: Mode, zk: &Zk, topo: &Topo, deadline: Duration) -> (Target, ColdStart) {
    let t0 = Instant::now();
    let mut target = Target::start(mode, zk);
    let cold = scenarios::cold_start(&target, topo, t0, deadline);
    if cold.state.is_none() || cold.ports.is_none() {
        let why = target.failure().unwrap_or_default();
        panic!(
            "{} did not serve {} within {deadline:?} {why}\n{}",
            mode.label(),
            topo.label,
            tail(&target.log())
        );
    }
    (target, cold)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn cold_row(
    section: &mut report::Section,
    what: &str,
    cold: &BTreeMap<Mode, ColdStart>,
    target: &str,
    limit: Option<Duration>,
) {
    let get = |m: Mode, f: fn(&ColdStart) -> Option<Duration>| {
        cold.get(&m).and_then(f).map(|d| d.as_micros() as u64)
    };
    for (label, f) in [
        ("runtime state complete", (|c: &ColdStart| c.state) as fn(&ColdStart) -> Option<Duration>),
        ("every port answers (any status)", |c: &ColdStart| c.ports),
    ] {
        let (pm, base) = (get(Mode::Proxymgr, f), get(Mode::Reload, f));
        // Serving 1000×50 means every server in rotation; a port that answers 503 is not that.
        let (limit, target) = if label == "runtime state complete" { (limit, target) } else { (None, "-") };
        let verdict = match (limit, pm) {
            (Some(limit), Some(pm)) if pm <= limit.as_micros() as u64 => "met".to_string(),
            (Some(limit), Some(pm)) => format!(
                "**MISSED**: {} > {} ({:.1}×)",
                Us(pm),
                Us(limit.as_micros() as u64),
                pm as f64 / limit.as_micros() as f64
            ),
            (Some(_), None) => "not measured".to_string(),
            (None, _) => "-".to_string(),
        };
        let show = |v: Option<u64>| v.map(|v| Us(v).to_string()).unwrap_or("-".into());
        section.row(&format!("{what}: {label}"), show(pm), show(base), ratio(base, pm), target, verdict);
    }
}

fn conv_rows(section: &mut report::Section, size: &str, conv: &BTreeMap<Mode, Convergence>) {
    let target = "p50 ≤ 2 ms, p99 ≤ 10 ms";
    let (pm, base) = (&of(conv, Mode::Proxymgr), &of(conv, Mode::Reload));
    for (kind, p, b) in [
        ("server out", &pm.out, &base.out),
        ("server back", &pm.back, &base.back),
        ("new server", &pm.new, &base.new),
        ("weight", &pm.weight, &base.weight),
        ("all kinds", &pm.all(), &base.all()),
    ] {
        section.samples(&format!("{size} {kind}"), p, b, target, Some((2_000, 10_000)));
    }
    section.samples(
        &format!(
            "{size} the ZooKeeper write's own round trip (the writer's view; inside every figure above)"
        ),
        &pm.write,
        &base.write,
        "-",
        None,
    );
}

fn reload_serving_row(
    section: &mut report::Section,
    what: &str,
    s: &BTreeMap<Mode, Samples>,
    target: &str,
    limit_us: u64,
) {
    let (pm, base) = (&of(s, Mode::Proxymgr), &of(s, Mode::Reload));
    let verdict = judge_p50_max(pm, limit_us);
    section.row(what, pm.summary(), base.summary(), ratio(base.p50(), pm.p50()), target, verdict);
}

/// Reload to serving is judged on its p50, with the max said when it is over.
fn judge_p50_max(s: &Samples, limit_us: u64) -> String {
    let verdict = judge(s, limit_us, u64::MAX);
    match s.max() {
        Some(max) if verdict == "met" && max > limit_us => format!("met at p50 (max {} over)", Us(max)),
        _ => verdict,
    }
}

// ---- small: 10 × 5 ----

fn small(plan: &Plan, backends: &[Backend], report: &mut Report) {
    report.progress("small: starting ZooKeeper, writing 10 services × 5 servers");
    let zk = start_zk(report);
    let topo = Topo::new(10, 5);
    topo.populate(&zk);
    let client = zk.client();
    // `web` (the real backends) takes the load; changing `other`'s listen options reloads.
    let (web_port, other_port) = (support::reserve_port(), support::reserve_port());
    for b in backends {
        topo::create(&client, &format!("{SERVER_ROOT}/web/{}", b.name()), &backend_json(b, "web"));
    }
    topo::create(&client, &format!("{SERVER_ROOT}/other/a"), &backend_json(&backends[0], "other"));
    topo::create(
        &client,
        &format!("{SERVICE_ROOT}/web"),
        &service_blob(&zk.connect_string(), "web", web_port, &[]),
    );
    topo::create(
        &client,
        &format!("{SERVICE_ROOT}/other"),
        &service_blob(&zk.connect_string(), "other", other_port, &[]),
    );

    let mut cold = BTreeMap::new();
    let mut conv = BTreeMap::new();
    let mut serving = BTreeMap::new();
    let mut loads: BTreeMap<(Mode, bool), LoadRun> = BTreeMap::new();
    for mode in modes() {
        report.progress(&format!("small: {} starting", mode.label()));
        let (mut target, c) = start_target(mode, &zk, &topo, Duration::from_secs(60));
        cold.insert(mode, c);
        wait_until(Duration::from_secs(30), "web to answer", || http_get(web_port).is_ok());
        report.progress(&format!("small: {} convergence, {} rounds", mode.label(), plan.small_rounds));
        conv.insert(
            mode,
            scenarios::convergence(&target, &client, &topo, plan.small_rounds, Duration::from_secs(30)),
        );
        report.progress(&format!(
            "small: {} reload to serving, {} new services",
            mode.label(),
            plan.small_new
        ));
        let tag = format!("s{}", mode as u8);
        let (s, created) = scenarios::reload_to_serving(
            &target,
            &client,
            &zk.connect_string(),
            plan.small_new,
            backends,
            &tag,
            Duration::from_secs(30),
        );
        serving.insert(mode, s);
        for (round, keep_alive) in [false, true].into_iter().enumerate() {
            report.progress(&format!(
                "small: {} {} reloads under load, {} clients",
                mode.label(),
                plan.load_reloads,
                if keep_alive { "keep-alive" } else { "connection-close" }
            ));
            let run = scenarios::reloads_under_load(
                &target,
                &client,
                &zk.connect_string(),
                web_port,
                other_port,
                plan.load_reloads,
                keep_alive,
                round,
            );
            loads.insert((mode, keep_alive), run);
        }
        if let Some(why) = target.failure() {
            report.failures.push(format!("small: {}: {why}", mode.label()));
        }
        drop(target);
        scenarios::delete_services(&client, &created);
    }

    let section = report.section("Small: 10 services × 5 servers");
    conv_rows(section, "ZooKeeper write to runtime state, 10×5:", &conv);
    reload_serving_row(
        section,
        "new service until its port serves, 10 services",
        &serving,
        "≤ 0.3 s (at 100 services)",
        300_000,
    );
    for keep_alive in [false, true] {
        let get = |mode| loads.get(&(mode, keep_alive)).cloned().unwrap_or_default();
        let (pm, base) = (&get(Mode::Proxymgr), &get(Mode::Reload));
        let show = |r: &LoadRun| {
            format!(
                "{} failed of {} ({} reloads in {:.0} s)",
                r.failed,
                r.ok + r.failed,
                r.reloads,
                r.seconds
            )
        };
        let per_reload = |r: &LoadRun| if r.reloads > 0 { r.failed as f64 / r.reloads as f64 } else { 0.0 };
        let verdict = if pm.reloads < plan.load_reloads {
            format!("**not measured**: only {} reloads", pm.reloads)
        } else if pm.failed == 0 {
            "met".to_string()
        } else {
            format!("**MISSED**: {} failed ({:.2} per reload)", pm.failed, per_reload(pm))
        };
        section.row(
            &format!(
                "failed requests across {} reloads, {} clients",
                plan.load_reloads,
                if keep_alive { "keep-alive" } else { "connection-close" }
            ),
            show(pm),
            show(base),
            format!("{:.2} vs {:.2} per reload", per_reload(base), per_reload(pm)),
            "0",
            verdict,
        );
        for (mode, run) in [(Mode::Proxymgr, pm), (Mode::Reload, base)] {
            if !run.errors.is_empty() {
                section.note(format!(
                    "{} {} errors (first few): {:?}",
                    mode.label(),
                    if keep_alive { "keep-alive" } else { "connection-close" },
                    run.errors
                ));
            }
            if run.stalled > 0 {
                section.note(format!("{}: {} reloads did not serve within 30 s", mode.label(), run.stalled));
            }
        }
    }
    cold_row(section, "cold start 10×5", &cold, "-", None);
}

fn backend_json(b: &Backend, service: &str) -> String {
    format!(r#"{{"host":"127.0.0.1","port":{},"name":"{service}"}}"#, b.port())
}

// ---- churn: 100 × 10 ----

fn churn(plan: &Plan, backends: &[Backend], report: &mut Report) {
    report.progress("churn: starting ZooKeeper, writing 100 services × 10 servers");
    let zk = start_zk(report);
    let topo = Topo::new(100, 10);
    topo.populate(&zk);
    let client = zk.client();
    let mut runs = BTreeMap::new();
    let mut serving = BTreeMap::new();
    let mut memory = None;
    for mode in modes() {
        report.progress(&format!("churn: {} starting", mode.label()));
        let (mut target, _) = start_target(mode, &zk, &topo, Duration::from_secs(60));
        report.progress(&format!("churn: {} 100 changes/s for {:?}", mode.label(), plan.churn_window));
        let run = scenarios::churn(&target, &zk, &topo, plan.churn_window, 100);
        runs.insert(mode, run);
        report.progress(&format!("churn: {} reload to serving at 100 services", mode.label()));
        let tag = format!("c{}", mode as u8);
        let (s, created) = scenarios::reload_to_serving(
            &target,
            &client,
            &zk.connect_string(),
            plan.churn_new,
            backends,
            &tag,
            Duration::from_secs(30),
        );
        serving.insert(mode, s);
        if mode == Mode::Proxymgr {
            memory = target.memory_kb();
        }
        if let Some(why) = target.failure() {
            report.failures.push(format!("churn: {}: {why}", mode.label()));
        }
        drop(target);
        scenarios::delete_services(&client, &created);
        scenarios::restore(&client, &topo);
    }

    let section = report.section(&format!(
        "Churn: 100 server changes/s for {} s, 100 services × 10 servers",
        plan.churn_window.as_secs()
    ));
    let (pm, base) = (&of(&runs, Mode::Proxymgr), &of(&runs, Mode::Reload));
    section.row(
        "changes written (rate)",
        format!("{} ({:.0}/s)", pm.changes, pm.changes as f64 / pm.window.as_secs_f64()),
        format!("{} ({:.0}/s)", base.changes, base.changes as f64 / base.window.as_secs_f64()),
        "-".into(),
        "100/s for 60 s",
        if pm.window.as_secs_f64() >= plan.churn_window.as_secs_f64() * 0.95 {
            "-".into()
        } else {
            "short window".into()
        },
    );
    section.row(
        "reloads during the window",
        pm.reloads.to_string(),
        base.reloads.to_string(),
        format!("+{}", base.reloads.saturating_sub(pm.reloads)),
        "0",
        if pm.reloads == 0 { "met".into() } else { format!("**MISSED**: {} reloads", pm.reloads) },
    );
    section.samples(
        "lag of a change (1 in 7 probed; a change not seen within 1 s counts as timed out)",
        &pm.lag,
        &base.lag,
        "p50 ≤ 2 ms, p99 ≤ 10 ms",
        Some((2_000, 10_000)),
    );
    let show_settle = |r: &scenarios::ChurnRun| {
        let equal =
            if r.mismatched == 0 { "equal".to_string() } else { format!("{} backends differ", r.mismatched) };
        match r.settle {
            Some(d) => format!("{equal}, {} after the last write", Us(d.as_micros() as u64)),
            None => format!("{equal}, not settled within 120 s"),
        }
    };
    section.row(
        "final state equals ZooKeeper's (servers in rotation, every backend)",
        show_settle(pm),
        show_settle(base),
        ratio(base.settle.map(|d| d.as_micros() as u64), pm.settle.map(|d| d.as_micros() as u64)),
        "equal",
        if pm.settle.is_some() && pm.mismatched == 0 {
            "met".into()
        } else {
            format!("**MISSED**: {} backends differ", pm.mismatched)
        },
    );
    let cpu =
        |r: &scenarios::ChurnRun| r.cpu_percent.map(|c| format!("{c:.1}% of a core")).unwrap_or("-".into());
    section.row(
        "daemon CPU during the window (HAProxy excluded)",
        cpu(pm),
        cpu(base),
        "-".into(),
        "-",
        "-".into(),
    );
    reload_serving_row(
        section,
        "new service until its port serves, 100 services",
        &serving,
        "≤ 0.3 s",
        300_000,
    );
    if let Some((hwm, rss)) = memory {
        section.note(format!(
            "proxymgr memory after the churn: peak RSS (VmHWM) {} MiB, RSS {} MiB",
            hwm / 1024,
            rss / 1024
        ));
    }
    section.note(
        "The baseline's CPU is the thread of the bench program that runs it (ZooKeeper reads, rendering, starting \
         HAProxy); HAProxy's own CPU is in neither figure."
            .to_string(),
    );
}

// ---- storm: 100 × 20 ----

/// The storm of DESIGN §6: 20 new services 0.5 s apart while clients hold connections, at 100 × 20.
const STORM_SERVICES: usize = 20;
const STORM_SPACING: Duration = Duration::from_millis(500);

fn storm(backends: &[Backend], report: &mut Report) {
    report.progress("storm: starting ZooKeeper, writing 100 services × 20 servers");
    let zk = start_zk(report);
    let topo = Topo::new(100, 20);
    topo.populate(&zk);
    let client = zk.client();
    let holder = Backend::start("hold");
    let mut runs: BTreeMap<Mode, StormRun> = BTreeMap::new();
    for mode in modes() {
        report.progress(&format!("storm: {} starting", mode.label()));
        let (mut target, _) = start_target(mode, &zk, &topo, Duration::from_secs(60));
        report.progress(&format!(
            "storm: {} {STORM_SERVICES} new services {STORM_SPACING:?} apart, connections held",
            mode.label()
        ));
        let tag = format!("st{}", mode as u8);
        let (run, created) = scenarios::storm(
            &target,
            &client,
            &zk.connect_string(),
            STORM_SERVICES,
            STORM_SPACING,
            backends,
            &holder,
            &tag,
        );
        runs.insert(mode, run);
        if let Some(why) = target.failure() {
            report.failures.push(format!("storm: {}: {why}", mode.label()));
        }
        drop(target);
        scenarios::delete_services(&client, &created);
    }

    let section = report.section(&format!(
        "Storm: {STORM_SERVICES} services added {:.1} s apart while clients hold connections, 100 services × 20 \
         servers",
        STORM_SPACING.as_secs_f64()
    ));
    let (pm, base) = (&of(&runs, Mode::Proxymgr), &of(&runs, Mode::Reload));
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let processes = |r: &StormRun| r.peak_processes().map(|p| p as u64);
    section.row(
        "HAProxy processes alive at once (peak)",
        show(processes(pm)),
        show(processes(base)),
        ratio(processes(base), processes(pm)),
        "≤ 4",
        match processes(pm) {
            Some(p) if p <= 4 => "met".into(),
            Some(p) => format!("**MISSED**: {p} > 4"),
            None => "not measured".into(),
        },
    );
    let mib =
        |r: &StormRun| r.peak_rss_kb().map_or("-".to_string(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0));
    section.row(
        "their summed RSS at its peak",
        mib(pm),
        mib(base),
        ratio(base.peak_rss_kb(), pm.peak_rss_kb()),
        "-",
        "-".into(),
    );
    section.row(
        "new service until its port serves (from its creation)",
        pm.delays.summary(),
        base.delays.summary(),
        format!("{} (max)", ratio(base.delays.max(), pm.delays.max())),
        "each ≤ 10 s",
        judge(&pm.delays, 10_000_000, 10_000_000),
    );
    section.row(
        "HAProxy starts from the first new service on",
        pm.reloads.to_string(),
        base.reloads.to_string(),
        "-".into(),
        "-",
        "-".into(),
    );
    let held = |r: &StormRun| format!("{} of {} cut", r.cut, r.held);
    section.row("held connections", held(pm), held(base), "-".into(), "-", "-".into());
    section.note(
        "Processes and RSS: the side's HAProxy processes (those whose arguments name its directory) counted every \
         0.1 s, from a second before the first new service until two seconds after the last one served; RSS is \
         each process's VmRSS, summed."
            .to_string(),
    );
    if runs.len() == 2 {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/storm.svg");
        let title = format!(
            "{STORM_SERVICES} new services {:.1} s apart while clients hold connections (100 × 20)",
            STORM_SPACING.as_secs_f64()
        );
        let lines = [
            plot::Line { label: "proxymgr", census: &pm.census, color: plot::PROXYMGR },
            plot::Line { label: "reload baseline", census: &base.census, color: plot::BASELINE },
        ];
        let drawn = std::fs::create_dir_all(path.parent().expect("docs/")).map_err(|e| e.to_string());
        match drawn.and_then(|()| plot::storm(&path, &title, &lines, Some(4.0))) {
            Ok(()) => section.note(format!("drawn in {}", path.display())),
            Err(e) => report.failures.push(format!("storm: cannot draw {}: {e}", path.display())),
        }
    }
}

// ---- large: 1000 × 50 ----

/// proxymgr's peak and current RSS, for the progress lines.
fn memory_now(target: &Target) -> String {
    match target.memory_kb() {
        Some((hwm, rss)) => format!("peak {} MiB, RSS {} MiB", hwm / 1024, rss / 1024),
        None => "-".into(),
    }
}

/// Convergence with and without a scraper at 10 a second on `/metrics`, and what `/metrics` and `/status` cost.
struct ScrapeEffect {
    quiet: Samples,
    scraped: Samples,
    scraper: scrape::Scraped,
    metrics: scrape::Scraped,
    status: scrape::Scraped,
    page: scrape::Scraped,
    /// proxymgr's (VmHWM, VmRSS) in KiB before and after.
    memory: [Option<(u64, u64)>; 2],
}

/// Four blocks of `rounds` convergence rounds each, alternately without and with the scraper, so that a drift of
/// the machine over the phase weighs on both alike.
fn scrape_effect(
    target: &Target,
    client: &zookeeper::ZooKeeper,
    topo: &Topo,
    rounds: usize,
    address: std::net::SocketAddr,
) -> ScrapeEffect {
    let mut effect = ScrapeEffect {
        quiet: Samples::new(),
        scraped: Samples::new(),
        scraper: scrape::Scraped::default(),
        metrics: scrape::Scraped::default(),
        status: scrape::Scraped::default(),
        page: scrape::Scraped::default(),
        memory: [None, None],
    };
    for block in 0..4 {
        let scraper =
            (block % 2 == 1).then(|| scrape::Scraper::start(address, "/metrics", Duration::from_millis(100)));
        let conv = scenarios::convergence(target, client, topo, rounds, Duration::from_secs(60));
        match scraper {
            Some(scraper) => {
                effect.scraped.extend(&conv.all());
                let scraped = scraper.stop();
                effect.scraper.took.extend(&scraped.took);
                effect.scraper.failed += scraped.failed;
                effect.scraper.bytes = scraped.bytes;
            }
            None => effect.quiet.extend(&conv.all()),
        }
    }
    // /metrics and the page are rendered at most once a second (and once per publication): the first fetch after
    // a second's pause renders, the rest within the second are served from the cache. /status is streamed.
    for (path, into) in
        [("/metrics", &mut effect.metrics), ("/status", &mut effect.status), ("/", &mut effect.page)]
    {
        for _ in 0..5 {
            // Pacing: past the one-second cache of /metrics, so that each fetch renders.
            std::thread::sleep(Duration::from_millis(1100));
            let once = scrape::fetch_times(address, path, 1);
            into.took.extend(&once.took);
            into.failed += once.failed;
            into.bytes = once.bytes;
        }
    }
    effect
}

impl ScrapeEffect {
    fn rows(&self, section: &mut report::Section) {
        if let [Some((hwm0, rss0)), Some((hwm1, rss1))] = self.memory {
            section.note(format!(
                "proxymgr's memory before the scraped rounds and the fetches below: peak {} MiB, RSS {} MiB; after: \
                 peak {} MiB, RSS {} MiB",
                hwm0 / 1024,
                rss0 / 1024,
                hwm1 / 1024,
                rss1 / 1024
            ));
        }
        let (quiet, scraped) = (self.quiet.p50(), self.scraped.p50());
        let verdict = match (quiet, scraped) {
            (Some(q), Some(s)) if s * 100 < q * 105 => "met".to_string(),
            (Some(q), Some(s)) => format!("**MISSED**: p50 {} scraped vs {} not", Us(s), Us(q)),
            _ => "not measured".to_string(),
        };
        let change = match (quiet, scraped) {
            (Some(q), Some(s)) if q > 0 => format!("{:+.1} %", (s as f64 - q as f64) / q as f64 * 100.0),
            _ => "-".into(),
        };
        section.row(
            "convergence, all kinds, 1000×50, scraped 10/s on /metrics (proxymgr) vs not scraped (baseline column)",
            self.scraped.summary(),
            self.quiet.summary(),
            change,
            "p50 changes by < 5 %",
            verdict,
        );
        for (what, s) in [
            ("the scraper's GET /metrics during those rounds (mostly cached)", &self.scraper),
            ("GET /metrics at 1000×50, rendered afresh", &self.metrics),
            ("GET /status at 1000×50, streamed (serialized twice: its length, then the body)", &self.status),
            ("GET / (the page) at 1000×50, servers whose views agree not listed", &self.page),
        ] {
            let failed = if s.failed > 0 { format!(", {} failed", s.failed) } else { String::new() };
            section.row(
                what,
                format!("{} ({} KiB{failed})", s.took.summary(), s.bytes / 1024),
                "-".into(),
                "-".into(),
                "-",
                if s.failed == 0 { "-".into() } else { "**FAILED**".into() },
            );
        }
    }
}

fn large(plan: &Plan, backends: &[Backend], report: &mut Report) {
    report.progress("large: starting ZooKeeper, writing 1000 services × 50 servers (51 000 nodes)");
    let zk = start_zk(report);
    let topo = Topo::new(1000, 50);
    let took = topo.populate(&zk);
    report.progress(&format!("large: tree written in {:.1} s", took.as_secs_f64()));
    let client = zk.client();

    let mut cold = BTreeMap::new();
    let mut conv = BTreeMap::new();
    let mut serving = BTreeMap::new();
    let mut idle_cpu = BTreeMap::new();
    let mut memory = None;
    let mut converge_log = None;
    let mut startup_log = None;
    let mut commands = Samples::new();
    let mut base_render = Samples::new();
    let mut scraping = None;
    for mode in modes() {
        report.progress(&format!("large: {} cold start", mode.label()));
        let (mut target, c) = start_target(mode, &zk, &topo, Duration::from_secs(180));
        report.progress(&format!(
            "large: {} serves after {:.2} s (state) / {:.2} s (ports)",
            mode.label(),
            c.state.unwrap_or_default().as_secs_f64(),
            c.ports.unwrap_or_default().as_secs_f64()
        ));
        cold.insert(mode, c);
        // Idle: let the start finish settling, then a window with no change at all (30 s, a whole drift check
        // interval, so one drift check is in it).
        report.progress(&format!("large: {} idle for {:?}", mode.label(), plan.idle_window));
        // Both sleeps are the measurement, not waits for an event (BENCHMARKS.md, method 5): the 2 s keep the tail
        // of the start out of the window, and the window is the time the daemon's CPU is measured over.
        std::thread::sleep(Duration::from_secs(2));
        let before = target.cpu_seconds();
        std::thread::sleep(plan.idle_window);
        if let (Some(a), Some(b)) = (before, target.cpu_seconds()) {
            idle_cpu.insert(mode, (b - a) / plan.idle_window.as_secs_f64() * 100.0);
        }
        report.progress(&format!(
            "large: {} convergence, {} rounds ({})",
            mode.label(),
            plan.large_rounds,
            memory_now(&target)
        ));
        let mark = target.log().len();
        let renders_before = match &target {
            Target::Reload(b) => b.shared.render_us.lock().unwrap().len(),
            _ => 0,
        };
        conv.insert(
            mode,
            scenarios::convergence(&target, &client, &topo, plan.large_rounds, Duration::from_secs(60)),
        );
        if let Target::Proxymgr(pm) = &target {
            if let Some(address) = pm.status_address() {
                report
                    .progress("large: proxymgr convergence, scraped 10 times a second and not, alternately");
                let before = target.memory_kb();
                let mut effect = scrape_effect(&target, &client, &topo, plan.large_rounds, address);
                effect.memory = [before, target.memory_kb()];
                scraping = Some(effect);
            }
        }
        match &target {
            Target::Proxymgr(_) => {
                let log = target.log();
                let window = &log[mark.min(log.len())..];
                converge_log = Some(scenarios::parse_converge(window));
                commands = scenarios::parse_commands(window);
                startup_log = Some(scenarios::parse_converge(&log[..mark.min(log.len())]));
            }
            Target::Reload(b) => {
                for us in &b.shared.render_us.lock().unwrap()[renders_before..] {
                    base_render.push_us(*us);
                }
            }
        }
        report.progress(&format!(
            "large: {} reload to serving, {} new services",
            mode.label(),
            plan.large_new
        ));
        let tag = format!("l{}", mode as u8);
        let (s, created) = scenarios::reload_to_serving(
            &target,
            &client,
            &zk.connect_string(),
            plan.large_new,
            backends,
            &tag,
            Duration::from_secs(60),
        );
        serving.insert(mode, s);
        if mode == Mode::Proxymgr {
            memory = target.memory_kb();
        }
        if let Some(why) = target.failure() {
            report.failures.push(format!("large: {}: {why}", mode.label()));
        }
        report.progress(&format!("large: {} stopping ({})", mode.label(), memory_now(&target)));
        drop(target);
        scenarios::delete_services(&client, &created);
    }

    let section = report.section("Large: 1000 services × 50 servers");
    section.note(format!(
        "writing the 51 000 nodes into ZooKeeper took {:.1} s (8 sessions)",
        took.as_secs_f64()
    ));
    cold_row(section, "cold start 1000×50", &cold, "≤ 5 s", Some(Duration::from_secs(5)));
    let show_mem = memory
        .map(|(hwm, rss)| {
            format!("{:.0} MiB peak (RSS now {:.0} MiB)", hwm as f64 / 1024.0, rss as f64 / 1024.0)
        })
        .unwrap_or("-".into());
    let mem_verdict = match memory {
        Some((hwm, _)) if hwm <= 64 * 1024 => "met".to_string(),
        Some((hwm, _)) => {
            format!("**MISSED**: {:.0} MiB > 64 MiB ({:.1}×)", hwm as f64 / 1024.0, hwm as f64 / 65536.0)
        }
        None => "not measured".to_string(),
    };
    section.row(
        "proxymgr peak RSS (VmHWM), end of the phase",
        show_mem,
        "-".into(),
        "-".into(),
        "≤ 64 MB",
        mem_verdict,
    );
    let show_cpu = |m: Mode| idle_cpu.get(&m).map(|c| format!("{c:.2}% of a core")).unwrap_or("-".into());
    let idle_verdict = match idle_cpu.get(&Mode::Proxymgr) {
        Some(c) if *c <= 1.0 => "met".to_string(),
        Some(c) => format!("**MISSED**: {c:.1}% of a core"),
        None => "not measured".to_string(),
    };
    let idle_what = format!("daemon CPU while idle ({} s, HAProxy excluded)", plan.idle_window.as_secs());
    section.row(&idle_what, show_cpu(Mode::Proxymgr), show_cpu(Mode::Reload), "-".into(), "~0", idle_verdict);
    conv_rows(section, "ZooKeeper write to runtime state, 1000×50:", &conv);
    if let Some(effect) = scraping {
        effect.rows(section);
    }
    reload_serving_row(section, "new service until its port serves, 1000×50", &serving, "≤ 1.5 s", 1_500_000);
    match converge_log {
        Some(parsed) if parsed.lines > 0 => {
            // The baseline's renderer is hand-written `write!`, the cheapest full render there is: a one-service
            // change that costs a tenth of it is not a full render.
            let verdict = match (parsed.render.p99(), base_render.p50()) {
                (Some(one), Some(full)) if one * 10 <= full => "met".to_string(),
                (Some(one), Some(full)) => {
                    format!("**MISSED**: p99 {} vs a full render's {}", Us(one), Us(full))
                }
                _ => "not measured".to_string(),
            };
            section.row(
                "render time for one changed service (proxymgr's `converge:` lines; baseline: its full render)",
                parsed.render.summary(),
                base_render.summary(),
                ratio(base_render.p50(), parsed.render.p50()),
                "far below a full render",
                verdict,
            );
            section.row(
                "plan time for one changed service",
                parsed.plan.summary(),
                "-".into(),
                "-".into(),
                "-",
                "-".into(),
            );
            section.note(format!(
                "{} `converge:` lines in proxymgr's log during the convergence rounds, {} of them with one changed \
                 service",
                parsed.lines,
                parsed.render.len()
            ));
            if let Some(full) = startup_log.and_then(|s| s.full_render) {
                section.note(format!(
                    "proxymgr's converges with every service changed (its start) rendered in up to {}",
                    Us(full)
                ));
            }
        }
        _ => {
            section.row(
                "render time for one changed service",
                "not found (no `converge:` debug lines in proxymgr's log)".into(),
                base_render.summary(),
                "-".into(),
                "far below a full render",
                "not measured".into(),
            );
        }
    }
    if !commands.is_empty() {
        section.note(format!(
            "proxymgr's runtime commands during the convergence rounds, as it logs them: {}",
            commands.summary()
        ));
    }
}
