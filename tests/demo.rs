//! `make demo`: a local ZooKeeper, two backends, one example service and proxymgr, all on 127.0.0.1, until
//! Ctrl-C. It uses the integration tests' fixtures, so everything it starts is stopped and deleted on exit.
//!
//! `DEMO_SMOKE=1` exits 0 as soon as a request through HAProxy succeeds (a test runs the demo that way).

#[path = "support/mod.rs"]
mod support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use support::{http_get, Backend, Proxymgr, Zk};

/// How long proxymgr gets to serve the example service.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // Registered first, so a Ctrl-C during startup also ends in an orderly cleanup.
    let mut signals = Signals::new([SIGINT, SIGTERM]).expect("register SIGINT and SIGTERM handlers");
    let smoke = std::env::var("DEMO_SMOKE").as_deref() == Ok("1");
    for tool in ["zookeeper", "haproxy"] {
        if !support::require(tool) {
            eprintln!("demo: {tool} is missing; `make deps` installs it");
            return ExitCode::FAILURE;
        }
    }

    println!("demo: starting ZooKeeper ...");
    let zk = Zk::start();
    let backends = [Backend::start("backend-1"), Backend::start("backend-2")];
    let port = if support::port_is_free(8080) { 8080 } else { support::reserve_port() };
    // A shared frontend the service also joins, routed by host (issue 16).
    let edge = support::reserve_port();

    let service = format!(
        r#"{{"type":"zookeeper","server":"{zk}","path":"/services/web","port":{port},"listen_options":["mode http"],"server_options":["check inter 2000"],"frontends":{{"edge":{{"hosts":["web.localhost"]}}}}}}"#,
        zk = zk.connect_string()
    );
    zk.create("/service_config/web", &service);
    for (name, backend) in ["a", "b"].iter().zip(&backends) {
        zk.create(
            &format!("/services/web/{name}"),
            &format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port()),
        );
    }

    let bin = support::proxymgr_bin();
    println!("demo: starting {} ...", bin.display());
    let mut proxymgr = Proxymgr::start_with(|dir| {
        let yaml = Proxymgr::config_yaml(dir, &zk.connect_string());
        let frontend = format!("  frontends:\n    edge:\n      bind: 127.0.0.1:{edge}\n");
        yaml.replacen("  bind_address: 127.0.0.1\n", &format!("  bind_address: 127.0.0.1\n{frontend}"), 1)
    });
    let tail = LogTail::start(proxymgr.dir().join("proxymgr.log"));

    // Wait until a request goes through HAProxy, or the deadline, or Ctrl-C, or proxymgr's exit.
    let deadline = Instant::now() + READY_TIMEOUT;
    let routed = |host: &str| support::http_get_host(edge, host, "/").ok().filter(|a| a.status == 200);
    let body = loop {
        if let (Ok(body), Some(_)) = (http_get(port), routed("web.localhost")) {
            break body;
        }
        if signals.pending().next().is_some() {
            println!("demo: interrupted; stopping");
            return shutdown(tail, proxymgr, backends, zk, ExitCode::FAILURE);
        }
        if let Some(status) = proxymgr.try_status() {
            eprintln!("demo: proxymgr exited ({status}) before serving");
            return shutdown(tail, proxymgr, backends, zk, ExitCode::FAILURE);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "demo: nothing served on 127.0.0.1:{port}, or for web.localhost on 127.0.0.1:{edge}, within {READY_TIMEOUT:?}"
            );
            return shutdown(tail, proxymgr, backends, zk, ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    let zk_port = zk.port();
    let server_b = backends[1].port();
    println!(
        "
demo ready: GET http://127.0.0.1:{port}/ answered {body:?}

  Try it:           curl http://127.0.0.1:{port}/      (repeat: backend-1 and backend-2 take turns)
  By host name:     curl -H 'Host: web.localhost' http://127.0.0.1:{edge}/   (the shared frontend `edge`;
                    any other host gets HAProxy's 503; the blob's \"frontends\" key routes hosts and paths)
  ZooKeeper:        127.0.0.1:{zk_port}
                    service spec at /service_config/web, its servers under /services/web
  Edit nodes:       /usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:{zk_port}
    take a server out:  delete /services/web/a
    add it back:        create /services/web/a '{{\"address\":\"127.0.0.1\",\"port\":{server_a}}}'
    add a server:       create /services/web/c '{{\"address\":\"127.0.0.1\",\"port\":{server_b}}}'
  See what it sees: http://{status}/  (the page), /status (JSON), /metrics (Prometheus)
                    {bin} status -c {dir}/proxymgr.yml
  Files:            {dir}  (haproxy.cfg, proxymgr.log)

proxymgr's log follows. Ctrl-C stops everything and deletes it all.
",
        server_a = backends[0].port(),
        dir = proxymgr.dir().display(),
        status = proxymgr.status_address().map_or_else(|| "(off)".to_string(), |a| a.to_string()),
        bin = bin.display(),
    );
    if smoke {
        println!("demo: DEMO_SMOKE=1, stopping");
        return shutdown(tail, proxymgr, backends, zk, ExitCode::SUCCESS);
    }

    // Wait for Ctrl-C (or SIGTERM), then stop in order: proxymgr (and its HAProxy), backends, ZooKeeper.
    if let Some(signal) = signals.forever().next() {
        println!("\ndemo: got signal {signal}; stopping");
    }
    shutdown(tail, proxymgr, backends, zk, ExitCode::SUCCESS)
}

/// Stops proxymgr first so it does not watch ZooKeeper vanish, then the rest, and returns `code`.
fn shutdown(
    tail: LogTail,
    mut proxymgr: Proxymgr,
    backends: [Backend; 2],
    zk: Zk,
    code: ExitCode,
) -> ExitCode {
    let status = proxymgr.stop();
    // Once proxymgr has exited its log is complete, and dropping the tail makes it read the file once more before
    // it stops: every last line gets printed without a wait.
    drop(tail);
    println!("demo: proxymgr exited ({status})");
    drop(proxymgr);
    drop(backends);
    drop(zk);
    code
}

/// Copies what a log file gains to stdout, from a thread, until dropped.
struct LogTail {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogTail {
    fn start(path: PathBuf) -> LogTail {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("log-tail".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    let mut offset = 0;
                    let mut buf = Vec::new();
                    loop {
                        // Checked before the last read, so the lines written up to `drop` get printed.
                        let stopping = stop.load(Ordering::SeqCst);
                        if let Ok(mut file) = File::open(&path) {
                            buf.clear();
                            if file.seek(SeekFrom::Start(offset)).is_ok()
                                && file.read_to_end(&mut buf).is_ok()
                            {
                                offset += buf.len() as u64;
                                let mut out = std::io::stdout().lock();
                                let _ = out.write_all(&buf);
                                let _ = out.flush();
                            }
                        }
                        if stopping {
                            return;
                        }
                        // `tail -f`'s pace: there is no end to wait for, only new lines to show within 100 ms.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .expect("spawn the log tail thread");
        LogTail { stop, thread: Some(thread) }
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
