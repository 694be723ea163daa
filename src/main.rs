//! proxymgr: keeps HAProxy in step with a service registry. This file parses the command line, sets up logging
//! and signals, starts the registry and hands over to the reconciler; the logic lives in the modules.

mod backoff;
mod config;
mod event;
mod fswatch;
mod haproxy;
mod option;
mod plan;
mod reconcile;
mod registry;
mod route;
mod service;
mod slots;
mod state;
mod status;
mod threads;
mod watcher;
mod zk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use crossbeam_channel::Sender;
use log::LevelFilter;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR2};

use config::Config;
use event::{Event, Signal};
use haproxy::process::Binary;
use reconcile::Outcome;

/// Exit codes, documented in README.md: 0 stopped or handed over on request, 1 failed while running, 2 bad command line
/// (clap's), 3 the configuration or the HAProxy binary is unusable, 4 another proxymgr owns the state file.
/// `proxymgr status` has Nagios' instead (status/cli.rs).
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 3;
const EXIT_OWNED: u8 = 4;

/// Keeps HAProxy in step with a service registry: services and servers from ZooKeeper, applied without
/// dropping connections.
#[derive(Parser)]
#[command(version, about, disable_help_subcommand = true)]
struct Args {
    /// proxymgr.yml to read.
    #[arg(short, long, value_name = "PATH", default_value = "/etc/proxymgr/proxymgr.yml", global = true)]
    config: PathBuf,
    /// Log debug messages.
    #[arg(short, long)]
    debug: bool,
    /// Validate the configuration (and that HAProxy accepts what it renders of it: global, defaults, frontends,
    /// extra sections), then exit.
    #[arg(short = 't', long)]
    check: bool,
    /// Internal: the keeper a handing-over proxymgr starts (SIGUSR2), with the hand-over socket's path, then its
    /// fd and the listeners' fds, all inherited.
    #[arg(long, hide = true, num_args = 2.., value_name = "ARG", conflicts_with = "check")]
    hand_over_keeper: Vec<std::ffi::OsString>,
    /// Without one, proxymgr runs as the daemon.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Ask the running proxymgr (at proxymgr.yml's status: address) how it is: a Nagios plugin's line, then a
    /// table. Exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Status,
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let args = Args::parse();
    if let Some(Command::Status) = args.command {
        // clap's own `args_conflicts_with_subcommands` would refuse the global -c before `status` too.
        if args.check || args.debug || !args.hand_over_keeper.is_empty() {
            let message = "`status` takes no option but -c/--config";
            Args::command().error(clap::error::ErrorKind::ArgumentConflict, message).exit();
        }
        return ExitCode::from(status::cli::run(&args.config));
    }
    init_logging(args.debug);
    ExitCode::from(run(&args))
}

fn run(args: &Args) -> u8 {
    if let Some((path, fds)) = args.hand_over_keeper.split_first() {
        let fds: Option<Vec<i32>> = fds.iter().map(|fd| fd.to_str()?.parse().ok()).collect();
        let Some(fds) = fds else {
            log::error!("--hand-over-keeper: the fds are not numbers");
            return EXIT_FAILED;
        };
        return haproxy::handover::keep(std::path::Path::new(path), &fds);
    }
    // Signals first: an init script may send SIGHUP or SIGTERM as soon as the process exists, and they must be
    // queued for the reconciler, not kill the process.
    let (events, inbox) = crossbeam_channel::unbounded();
    if !args.check {
        if let Err(e) = forward_signals(events.clone()) {
            log::error!("cannot install signal handlers: {e}");
            return EXIT_FAILED;
        }
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return EXIT_CONFIG;
        }
    };
    let binary = match Binary::locate(&config.haproxy.path) {
        Ok(binary) => binary,
        Err(e) => {
            log::error!("{}: {e}", args.config.display());
            return EXIT_CONFIG;
        }
    };
    if args.check {
        return check(args, &config, &binary);
    }
    // Before anything else runs: a second proxymgr on the same state file would take the first one's HAProxy
    // for an orphan and replace it. The first serves on and never notices.
    // A lock that cannot be had at all (the state file's directory unwritable, say) costs that guard, not the
    // service: proxymgr ran without a writable state file before, and the state file's writer says so too.
    let _owner = match state::own(&config.state_file) {
        Ok(owner) => Some(owner),
        Err(e @ state::OwnError::Taken { .. }) => {
            log::error!("{e}; exiting");
            return EXIT_OWNED;
        }
        Err(e) => {
            log::warn!("{e}; running without the guard against a second proxymgr on this state file");
            None
        }
    };
    let (major, minor) = binary.version;
    log::info!(
        "proxymgr {} with HAProxy {major}.{minor} ({}, {})",
        env!("CARGO_PKG_VERSION"),
        binary.version_text,
        binary.path.display()
    );
    let caps = haproxy::Capabilities::of_binary(&binary);
    log::info!("HAProxy {major}.{minor}: {}", caps.new_servers());
    for line in haproxy::capabilities::summary(binary.version) {
        log::info!("HAProxy {major}.{minor}: {line}");
    }
    for line in caps.unmet(&config.haproxy) {
        log::warn!("HAProxy {major}.{minor}: {line}");
    }

    // A restart or an upgrade: the proxymgr before this one left HAProxy serving and its listeners with a keeper.
    let socket = haproxy::handover::socket_path(&config.state_file);
    let handed = haproxy::handover::receive(&socket).unwrap_or_else(|e| {
        log::warn!("{e}; binding the listeners anew beside the HAProxy left serving");
        Vec::new()
    });

    let published = status::Published::default();
    match config.status.0 {
        Some(address) => status::server::start(address, published.clone()),
        None => log::info!("status: off (proxymgr.yml)"),
    }
    let watchers = watcher::Context { sessions: Arc::new(zk::Sessions::new(events.clone())), events };
    match reconcile::run(args.config.clone(), config, binary, handed, inbox, watchers, published) {
        Outcome::Stopped => {
            log::info!("stopped");
            0
        }
        Outcome::HandedOver => {
            log::info!("handed over; exiting");
            0
        }
        Outcome::Failed => EXIT_FAILED,
    }
}

/// `--check`: the file parsed and validated; now HAProxy must accept the global and defaults it yields.
fn check(args: &Args, config: &Config, binary: &Binary) -> u8 {
    for line in haproxy::Capabilities::of_binary(binary).unmet(&config.haproxy) {
        log::warn!("HAProxy {}: {line}", binary.version_text);
    }
    match haproxy::check_head(&config.haproxy, binary) {
        Ok(()) => {
            println!(
                "{}: OK (HAProxy {} accepts its global, defaults, frontends and extra sections)",
                args.config.display(),
                binary.version_text
            );
            0
        }
        Err(haproxy::HeadRejected { keys, reason }) => {
            log::error!("{}: {keys}: HAProxy rejects them: {reason}", args.config.display());
            EXIT_CONFIG
        }
    }
}

/// glibc gives each thread that allocates an arena of its own, up to eight per core, and an arena keeps what
/// was freed in it. proxymgr's threads besides the reconciler (watchers, ZooKeeper readers, the status
/// endpoint's) allocate little and briefly, so their arenas mostly hold freed memory: at 1000 services × 50
/// servers two arenas in all keep the daemon some 3 MB smaller (BENCHMARKS.md). Before any thread starts.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Signals become events on the reconciler's channel; no logic runs in a handler.
fn forward_signals(events: Sender<Event>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD])?;
    let spawned = threads::spawn("signals".into(), events.clone(), move || {
        for signal in signals.forever() {
            let signal = match signal {
                SIGTERM | SIGINT => Signal::Terminate,
                SIGHUP => Signal::Reload,
                SIGUSR2 => Signal::HandOver,
                _ => Signal::Child,
            };
            if events.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    });
    // Without it the caught signals would go nowhere, and nothing could stop proxymgr gently: better not to start
    // (nothing runs yet that this would orphan).
    spawned.map(drop).ok_or_else(|| std::io::Error::other("no thread for the signals"))
}

fn init_logging(debug: bool) {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let config = simplelog::ConfigBuilder::new()
        // Only proxymgr's own messages: the zookeeper crate logs every packet at debug.
        .add_filter_allow_str("proxymgr")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let _ = simplelog::WriteLogger::init(level, config, std::io::stderr());
}
