//! The reconciler: the one thread that brings the serving HAProxy in line with the registry. This file is only
//! its loop: it receives events, hands them to the [`core`] (which decides), carries out the actions the core
//! asks for (HAProxy's through the [`Instance`], the registry's and watchers' through [`Sources`]), feeds each
//! outcome straight back, and sleeps until the next event or the core's next wake.
//!
//! **Architecture Invariant:** no other thread touches HAProxy, the listeners or haproxy.cfg; the others only
//! send events.

mod core;
mod hold;
mod messages;
mod quarantine;
mod routes;
mod services;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{never, select, Receiver};

use crate::config::Config;
use crate::event::{Event, Signal};
use crate::haproxy::instance::Instance;
use crate::haproxy::process::Binary;
use crate::registry;
use crate::state::State;
use crate::status::Published;
use crate::watcher::{self, Watcher};

use self::core::Core;
pub use self::core::Outcome;
use self::messages::{Action, Input};

/// Runs the reconciler until it is asked to stop or to hand over, or a part of the daemon dies. `handed` are
/// the listening sockets the proxymgr before this one handed over.
pub fn run(
    config_file: PathBuf,
    config: Config,
    binary: Binary,
    handed: Vec<OwnedFd>,
    events: Receiver<Event>,
    context: watcher::Context,
    published: Published,
) -> Outcome {
    let saved = State::load(&config.state_file).unwrap_or_default();
    let events_out = context.events.clone();
    let mut instance =
        Instance::new(binary.clone(), config.haproxy.clone(), &saved.haproxy_pids, handed, events_out);
    let mut sources = Sources { config_file, context, source: None, watchers: BTreeMap::new(), published };
    let mut core =
        Core::new(config, &binary, saved.services, Instant::now(), Instant::now).with_routes(saved.routes);
    core.set_epoch(Instant::now(), SystemTime::now());
    execute_all(&mut core, &mut instance, &mut sources);
    loop {
        let timer = core.next_wake().map(crossbeam_channel::at).unwrap_or_else(never);
        select! {
            recv(events) -> event => {
                // Every sender gone: nothing can ever happen again.
                let input = event.map_or_else(|_| died("every event sender"), input_of);
                feed(&mut core, &mut instance, &mut sources, input);
            },
            recv(timer) -> _ => {},
        }
        // A burst of events becomes one piece of work.
        while core.outcome().is_none() {
            let Ok(event) = events.try_recv() else { break };
            feed(&mut core, &mut instance, &mut sources, input_of(event));
        }
        // The wall clock read afresh, so that the status's Unix times follow its adjustments.
        core.set_epoch(Instant::now(), SystemTime::now());
        core.tick(Instant::now());
        execute_all(&mut core, &mut instance, &mut sources);
        if let Some(outcome) = core.outcome() {
            return outcome;
        }
    }
}

fn died(thread: &str) -> Input {
    Input::ThreadDied { thread: thread.into(), reason: "gone".into() }
}

fn input_of(event: Event) -> Input {
    match event {
        Event::Services { source, services } => Input::Services { source, services },
        Event::Servers { service, generation, servers } => Input::Servers { service, generation, servers },
        Event::Signal(Signal::Terminate) => Input::Terminate,
        Event::Signal(Signal::Reload) => Input::Hangup,
        Event::Signal(Signal::HandOver) => Input::HandOver,
        Event::Signal(Signal::Child) => Input::Child,
        Event::ThreadDied { thread, reason } => Input::ThreadDied { thread, reason },
        Event::Session { ensemble, news } => Input::Session { ensemble, news },
    }
}

fn feed(core: &mut Core, instance: &mut Instance, sources: &mut Sources, input: Input) {
    core.handle(input, Instant::now());
    execute_all(core, instance, sources);
}

/// Carries out every action the core asks for, feeding each outcome back before asking for the next.
fn execute_all(core: &mut Core, instance: &mut Instance, sources: &mut Sources) {
    while let Some(action) = core.poll_action() {
        if let Some(input) = execute(action, instance, sources) {
            core.handle(input, Instant::now());
        }
        if let Some(generations) = instance.generations_changed() {
            core.handle(Input::Generations(generations), Instant::now());
        }
    }
}

fn execute(action: Action, instance: &mut Instance, sources: &mut Sources) -> Option<Input> {
    Some(match action {
        Action::Bind { addresses } => Input::Bound(instance.bind(&addresses)),
        Action::Watch { service, spec, generation } => {
            let watcher = watcher::start(&service, &spec, generation, &sources.context);
            sources.watchers.insert(service, watcher);
            return None;
        }
        Action::Unwatch { service } => {
            sources.watchers.remove(&service);
            return None;
        }
        Action::FollowSource { source, generation } => {
            sources.source = Some(registry::start(&source, generation, &sources.context));
            return None;
        }
        Action::ReadConfig => return sources.read_config().map(|read| Input::ConfigRead(Box::new(read))),
        Action::UseHaproxy { binary, haproxy } => {
            instance.reconfigure(binary, *haproxy);
            return None;
        }
        Action::Run(commands) => Input::Ran(instance.run(&commands).map_err(Into::into)),
        Action::QueryMap { frontend, map } => {
            Input::MapEntries { frontend, result: instance.map_entries(&map) }
        }
        Action::QueryServers { backend } => {
            let result = instance.servers_state(&backend);
            Input::ServersState { backend, result }
        }
        Action::WriteConfig { text, maps } => {
            instance.write_config(text, maps);
            return None;
        }
        Action::Start { text, fds, maps, reasons } => {
            let why = reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            match instance.start(&text, fds, &maps, &why) {
                Ok(pid) => Input::Started { pid },
                Err(failure) => Input::StartFailed(failure),
            }
        }
        Action::AskServing { pid } => Input::Serving(instance.serving_pid(pid)),
        Action::Reap => {
            let exit = instance.reap()?;
            Input::Exited { pid: exit.pid, how: exit.how, ran: exit.ran }
        }
        Action::HardStop { pids } => {
            instance.hard_stop(&pids);
            return None;
        }
        Action::Check => Input::Checked(instance.check()),
        Action::Accept => {
            instance.accept();
            return None;
        }
        Action::Reject { reason } => {
            instance.reject(&reason);
            return None;
        }
        Action::CloseListeners { keep } => {
            instance.close_listeners_but(&keep);
            return None;
        }
        Action::SaveState { path, snapshot } => Input::StateSaved(instance.save_state(path, snapshot)),
        Action::Stop { timeout, save } => {
            // Watchers and the source stop when their handles drop.
            sources.watchers.clear();
            sources.source = None;
            instance.stop(timeout, save);
            return None;
        }
        Action::Publish(status) => {
            sources.published.publish(status);
            return None;
        }
        Action::HandOver { state_file, snapshot } => {
            // Watchers and the source stop when their handles drop: the next proxymgr reads the registry afresh.
            sources.watchers.clear();
            sources.source = None;
            Input::HandedOver(instance.hand_over(&state_file, snapshot))
        }
    })
}

/// What the loop drives besides HAProxy: where services and servers come from (the `service_config` source
/// and each service's watcher, which stop when their handles here are dropped), and where the status goes.
struct Sources {
    config_file: PathBuf,
    context: watcher::Context,
    source: Option<registry::Source>,
    watchers: BTreeMap<String, Watcher>,
    published: Published,
}

impl Sources {
    /// SIGHUP: proxymgr.yml and its HAProxy binary again. An invalid file changes nothing (and is logged).
    fn read_config(&self) -> Option<(Config, Binary)> {
        log::info!("SIGHUP: re-reading {}", self.config_file.display());
        let read = Config::load(&self.config_file).map_err(|e| e.to_string()).and_then(|config| {
            Instance::locate(&config.haproxy.path).map(|binary| (config, binary)).map_err(|e| e.to_string())
        });
        read.map_err(|e| log::error!("{e}; keeping the running configuration")).ok()
    }
}
