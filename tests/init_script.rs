//! Issue 14 §4: the one init script (packaging/proxymgr.init) on both families' layouts, without installing
//! anything. Each layout is laid over this machine in private mount and pid namespaces (`unshare`), which end
//! with the test:
//!
//! - EL (RHEL, Rocky, Alma 8 and 9): the script at `/etc/rc.d/init.d/proxymgr` (and `/etc/init.d` a link to
//!   `rc.d/init.d`), EL's `/etc/rc.d/init.d/functions` beside it (a stand-in: EL's own is not to be had here),
//!   settings in `/etc/sysconfig/proxymgr`, `/var/lock/subsys`, no `/lib/lsb` and `/bin/sh` being bash, as on
//!   EL;
//! - Debian and Ubuntu: the script at `/etc/init.d/proxymgr`, settings in `/etc/default/proxymgr`, this
//!   machine's `/lib/lsb/init-functions`, no `/etc/rc.d` and `/bin/sh` being dash.
//!
//! Both have `/usr/bin/proxymgr` (this build's), an empty `/run` (no systemd runs there, no pidfile of the
//! machine's) and a `/proc` of their own (no proxymgr of the machine's). `/etc` and `/usr/bin` are overlays:
//! the layout's files on top of the machine's (so the package's own files, should another test install the deb
//! meanwhile, give way to them), and whiteouts over the other family's files. The script runs its harmless paths (status, usage, stop and
//! reload with nothing running, start with ENABLED=0, check), then starts a proxymgr that serves through
//! HAProxy, reloads, restarts (a hand-over) and stops it, all inside the namespaces.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{
    self, all_processes, find_on_path, http_get, reserve_port, reserved_listener, wait_for, wait_until,
    Backend,
};

/// One init script action or shell step inside the namespaces.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a change may take to show in what HAProxy serves.
const SETTLE: Duration = Duration::from_secs(30);
/// The binary inside the namespaces.
const DAEMON: &str = "/usr/bin/proxymgr";

/// A family's layout.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Family {
    El,
    Debian,
}

impl Family {
    /// Where the package puts the init script.
    fn init(self) -> &'static str {
        match self {
            Family::El => "/etc/rc.d/init.d/proxymgr",
            Family::Debian => "/etc/init.d/proxymgr",
        }
    }

    /// The settings file the script reads.
    fn defaults(self) -> &'static str {
        match self {
            Family::El => "/etc/sysconfig/proxymgr",
            Family::Debian => "/etc/default/proxymgr",
        }
    }

    /// The shell `/bin/sh` is.
    fn shell(self) -> &'static str {
        match self {
            Family::El => "bash",
            Family::Debian => "dash",
        }
    }
}

/// What each layout hides of the machine's /etc: on EL, Debian's settings file, which the script would read
/// first (always: another test may install the deb meanwhile, and a path that appears in an overlay's lower
/// layer shows through); on Debian, EL's places, should this machine have them.
fn hidden(family: Family) -> Vec<&'static str> {
    match family {
        Family::El => vec!["default/proxymgr"],
        Family::Debian => ["sysconfig/proxymgr", "rc.d"]
            .into_iter()
            .filter(|path| fs::symlink_metadata(Path::new("/etc").join(path)).is_ok())
            .collect(),
    }
}

#[test]
fn the_init_script_runs_on_el_layout() {
    init_script_on(Family::El);
}

#[test]
fn the_init_script_runs_on_debian_layout() {
    init_script_on(Family::Debian);
}

fn init_script_on(family: Family) {
    if !is_root() {
        eprintln!("skipping: the {family:?} layout is mounted in private namespaces, which takes root");
        return;
    }
    for tool in ["unshare", "nsenter", family.shell(), "haproxy"] {
        if !support::require(tool) {
            return;
        }
    }
    let dir =
        tempfile::Builder::new().prefix("proxymgr-init-layout-").tempdir().expect("a temporary directory");
    let dir = dir.path();
    let layout = Layout::build(family, dir);
    let ns = Namespaces::enter(family, &layout);
    let init = family.init();

    // The layout is the one named.
    let shell = ns.sh("readlink -f /bin/sh");
    assert!(shell.stdout.trim().ends_with(family.shell()), "/bin/sh is {}: {shell:?}", family.shell());
    let lsb = ns.sh("test -e /lib/lsb/init-functions").status.success();
    let functions = ns.sh("test -e /etc/rc.d/init.d/functions").status.success();
    match family {
        Family::El => assert!(functions && !lsb, "EL: rc.d/init.d/functions, no /lib/lsb"),
        Family::Debian => assert!(
            !functions && lsb == Path::new("/lib/lsb/init-functions").exists(),
            "Debian: no rc.d/init.d/functions, the machine's /lib/lsb"
        ),
    }

    // Nothing runs: the harmless paths.
    ns.expect(&[init, "status"], 3, "proxymgr is not running");
    ns.expect(&[init, "help"], 2, &format!("Usage: {init} {{start|stop|restart|"));
    ns.expect(&[init], 2, "Usage: ");
    ns.expect(&[init, "stop"], 0, "proxymgr is not running");
    ns.expect(&[init, "reload"], 7, "proxymgr is not running");
    ns.expect(&[init, "try-restart"], 0, "not running; not restarting");
    // The settings are read from the family's file.
    ns.expect(&[init, "start"], 0, &format!("not starting: ENABLED is not 1 in {}", family.defaults()));
    ns.expect(&[init, "status"], 3, "proxymgr is not running");
    // check (proxymgr --check): 6 on a config that does not parse, 0 on the test's.
    fs::write(&layout.config, "haproxy: [\n").expect("write a broken config");
    ns.expect(&[init, "check"], 6, "does not pass proxymgr --check");
    // A pidfile naming no live process (pids in this pid namespace are few), one that names nothing.
    ns.sh("mkdir -p /run/proxymgr && echo 4000000 >/run/proxymgr/proxymgr.pid");
    ns.expect(
        &[init, "status"],
        1,
        "proxymgr is not running, but /run/proxymgr/proxymgr.pid names pid 4000000",
    );
    ns.sh("echo nonsense >/run/proxymgr/proxymgr.pid");
    ns.expect(&[init, "status"], 4, "status unknown");
    ns.sh("rm -f /run/proxymgr/proxymgr.pid");
    if family == Family::El {
        // EL's subsys lock without a pidfile: "dead, lock file left", which stop clears.
        ns.sh(": >/var/lock/subsys/proxymgr");
        ns.expect(&[init, "status"], 2, "/var/lock/subsys/proxymgr exists");
        ns.expect(&[init, "stop"], 0, "proxymgr is not running");
        ns.expect(&[init, "status"], 3, "proxymgr is not running");
        // `service proxymgr` on EL runs it through the /etc/init.d link.
        ns.expect(&["/etc/init.d/proxymgr", "status"], 3, "proxymgr is not running");
    } else {
        assert!(!ns.sh("test -e /var/lock/subsys").status.success(), "Debian has no /var/lock/subsys");
    }

    // A proxymgr that serves: start, status, reload, restart (a hand-over), stop.
    let backend = Backend::start(&format!("{family:?}"));
    let port = reserve_port();

    // `proxymgr status -c CONFIG` (as monitoring runs it) is not the daemon: held waiting on a status endpoint
    // that never answers, it is neither reported as running nor stopped.
    let silent = reserved_listener();
    layout.write_config(port, backend.port(), 1000, silent.local_addr().expect("its address").port());
    let asking = format!("{DAEMON} status -c {} >/dev/null 2>&1 &", layout.config.display());
    ns.sh(&asking);
    let connection = accept_within(&silent, STEP_TIMEOUT);
    ns.expect(&[init, "status"], 3, "proxymgr is not running");
    ns.expect(&[init, "stop"], 0, "proxymgr is not running");
    drop(connection);

    let status_port = reserve_port();
    layout.write_config(port, backend.port(), 1000, status_port);
    ns.expect(&[init, "check"], 0, "OK");
    layout.set_enabled(true);
    ns.expect(&[init, "start"], 0, "Starting proxymgr: proxymgr (pid ");
    let status = ns.expect(&[init, "status"], 0, "proxymgr is running (pid ");
    let pid = status
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("proxymgr is running (pid ")
        .trim_end_matches(')')
        .to_string();
    assert!(pid.parse::<u32>().is_ok(), "the first line names the pid: {status:?}");
    wait_serves(port, &backend);
    // Then what `proxymgr status` says: its verdict's line (UNKNOWN while nothing answers at the status
    // address, the daemon's endpoint not being up yet), and its table once the endpoint answers. The exit
    // code stays the LSB's 0.
    let status = ns.expect(&[init, "status"], 0, "proxymgr is running (pid ");
    let verdict = status.stdout.lines().nth(1).unwrap_or_default();
    assert!(verdict.starts_with("PROXYMGR "), "status prints the verdict's line second: {status:?}");
    if verdict.starts_with("PROXYMGR UNKNOWN") {
        assert!(verdict.contains(&format!("127.0.0.1:{status_port}")), "names the status address: {verdict}");
    }
    // The endpoint shows what the reconciler published last, at most half a second behind: web and its
    // server come.
    let mut last = status;
    wait_until(SETTLE, "init status to show web in proxymgr status's table", || {
        last = ns.expect(&[init, "status"], 0, "proxymgr is running (pid ");
        last.stdout.contains("\nweb ")
    });
    assert!(last.stdout.lines().nth(1).is_some_and(|l| l.starts_with("PROXYMGR OK")), "{last:?}");
    let lock = ns.sh("test -e /var/lock/subsys/proxymgr").status.success();
    assert_eq!(lock, family == Family::El, "start keeps EL's subsys lock, and only there");
    ns.expect(&[init, "start"], 0, &format!("proxymgr is already running (pid {pid})"));

    layout.write_config(port, backend.port(), 1001, status_port);
    ns.expect(&[init, "reload"], 0, &format!("Reloading proxymgr configuration: proxymgr (pid {pid})."));
    wait_until(SETTLE, "the reload to reach haproxy.cfg", || {
        fs::read_to_string(&layout.haproxy_cfg).is_ok_and(|cfg| cfg.contains("maxconn 1001"))
    });
    ns.expect(&[init, "status"], 0, &format!("proxymgr is running (pid {pid})"));

    ns.expect(&[init, "restart"], 0, "Handing proxymgr over: pid ");
    let status = ns.expect(&[init, "status"], 0, "proxymgr is running (pid ");
    assert!(!status.stdout.contains(&format!("(pid {pid})")), "restart runs a new proxymgr: {status:?}");
    wait_serves(port, &backend);

    ns.expect(&[init, "stop"], 0, "Stopping proxymgr: proxymgr.");
    ns.expect(&[init, "status"], 3, "proxymgr is not running");
    assert!(!ns.sh("test -e /var/lock/subsys/proxymgr").status.success(), "stop removes the subsys lock");
    wait_until(SETTLE, "the service port to close after stop", || http_get(port).is_err());
    let log = fs::read_to_string(&layout.log).unwrap_or_default();
    assert!(log.contains("stopped"), "proxymgr logs to LOGFILE: {log}");

    // The script never leans on EL's functions (nor Debian's init-functions): it is the same on both.
    assert!(!layout.functions_sourced.exists(), "the init script sourced /etc/rc.d/init.d/functions");
}

/// The files laid over the machine for one family.
struct Layout {
    /// Lower layers for the overlays of /etc and /usr/bin.
    etc: PathBuf,
    bin: PathBuf,
    /// CONFIG, LOGFILE, haproxy.cfg and the settings file, outside the overlays so the test can change them.
    config: PathBuf,
    defaults: PathBuf,
    log: PathBuf,
    haproxy_cfg: PathBuf,
    services: PathBuf,
    state: PathBuf,
    /// Written by the stand-in EL functions file if anything sources it.
    functions_sourced: PathBuf,
    haproxy: PathBuf,
}

impl Layout {
    fn build(family: Family, dir: &Path) -> Layout {
        let layout = Layout {
            etc: dir.join("layer/etc"),
            bin: dir.join("layer/usr/bin"),
            config: dir.join("proxymgr.yml"),
            defaults: dir.join("defaults"),
            log: dir.join("log/proxymgr.log"),
            haproxy_cfg: dir.join("haproxy.cfg"),
            services: dir.join("services"),
            state: dir.join("state.json"),
            functions_sourced: dir.join("functions-sourced"),
            haproxy: find_on_path("haproxy").expect("haproxy is on PATH"),
        };
        fs::create_dir_all(&layout.bin).expect("create the /usr/bin layer");
        fs::create_dir_all(&layout.services).expect("create the services directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.init");
        let init = layout.etc.join(family.init().trim_start_matches("/etc/"));
        fs::create_dir_all(init.parent().expect("the script's directory"))
            .expect("create the script's directory");
        fs::copy(&script, &init).expect("copy the init script");
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).expect("chmod the init script");
        symlink(env!("CARGO_BIN_EXE_proxymgr"), layout.bin.join("proxymgr")).expect("link /usr/bin/proxymgr");
        let defaults = layout.etc.join(family.defaults().trim_start_matches("/etc/"));
        fs::create_dir_all(defaults.parent().expect("the settings' directory")).expect("create it");
        symlink(&layout.defaults, &defaults).expect("link the settings file");
        if family == Family::El {
            // EL: /etc/init.d is a link to rc.d/init.d; functions beside the script; /bin/sh is bash.
            symlink("rc.d/init.d", layout.etc.join("init.d")).expect("link /etc/init.d");
            fs::write(
                layout.etc.join("rc.d/init.d/functions"),
                format!(
                    "# A stand-in for EL's functions (initscripts): it notes that it was sourced.\n\
                     : >'{}'\nsuccess() {{ return 0; }}\nfailure() {{ return 1; }}\n",
                    layout.functions_sourced.display()
                ),
            )
            .expect("write the stand-in functions");
            symlink("bash", layout.bin.join("sh")).expect("link /usr/bin/sh to bash");
        } else {
            symlink("dash", layout.bin.join("sh")).expect("link /usr/bin/sh to dash");
        }
        for path in hidden(family) {
            whiteout(&layout.etc.join(path));
        }
        let settings = format!(
            "# {family:?} layout of tests/init_script.rs\nENABLED=0\nCONFIG={}\nDAEMON_OPTS=\nLOGFILE={}\n\
             STOP_TIMEOUT=30\nSTART_TIMEOUT=15\n",
            layout.config.display(),
            layout.log.display()
        );
        fs::write(&layout.defaults, settings).expect("write the settings file");
        layout
    }

    /// proxymgr.yml: one service, `web`, on `port`, its one server read from a file (no ZooKeeper), and the
    /// status endpoint on `status_port`.
    fn write_config(&self, port: u16, backend: u16, maxconn: u32, status_port: u16) {
        let servers = self.services.parent().expect("the test's directory").join("servers.txt");
        fs::write(&servers, format!("127.0.0.1:{backend}\n")).expect("write servers.txt");
        fs::write(
            self.services.join("web.json"),
            format!(
                r#"{{"type":"file","file":"{}","interval":0.2,"port":{port},"listen_options":["mode http"]}}"#,
                servers.display()
            ),
        )
        .expect("write the service");
        let yaml = format!(
            "haproxy:\n  path: {}\n  config_path: {}\n  socket_path: /run/proxymgr/haproxy.sock\n  \
             bind_address: 127.0.0.1\n  stop_timeout: 5\n  global:\n    - maxconn {maxconn}\n  defaults:\n    \
             - mode http\n    - timeout connect 2s\n    - timeout client 10s\n    - timeout server 10s\n\
             state_file: {}\nservice_config:\n  type: directory\n  path: {}\nstatus: 127.0.0.1:{status_port}\n",
            self.haproxy.display(),
            self.haproxy_cfg.display(),
            self.state.display(),
            self.services.display()
        );
        fs::write(&self.config, yaml).expect("write proxymgr.yml");
    }

    fn set_enabled(&self, enabled: bool) {
        let text = fs::read_to_string(&self.defaults).expect("read the settings file");
        let value = if enabled { "ENABLED=1" } else { "ENABLED=0" };
        let text: String = text
            .lines()
            .map(|l| if l.starts_with("ENABLED=") { value } else { l })
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&self.defaults, text).expect("write the settings file");
    }
}

/// An overlay whiteout (a 0:0 character device): the path is absent from the merged directory.
fn whiteout(path: &Path) {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    fs::create_dir_all(path.parent().expect("a parent")).expect("create the whiteout's directory");
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .unwrap_or_else(|e| panic!("whiteout {}: {e}", path.display()));
}

/// The layout's mount and pid namespaces. Their first process (pid 1 inside) lays the layout over the machine,
/// then waits for its standard input to close, reaping what is left to it meanwhile; steps run inside through
/// `nsenter`. Dropping this closes that input: pid 1 exits, and the kernel kills whatever else runs inside
/// (proxymgr, HAProxy, the keeper), so nothing outlives the test.
struct Namespaces {
    holder: Child,
    stdin: Option<ChildStdin>,
    /// pid 1 inside, as the machine sees it.
    leader: u32,
    out: PathBuf,
}

/// pid 1's script: $1 the /etc layer, $2 the /usr/bin layer, $3 el or debian.
const LEADER: &str = r#"
set -e
mount -t overlay overlay -o "lowerdir=$1:/etc" /etc
mount -t overlay overlay -o "lowerdir=$2:/usr/bin" /usr/bin
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock
if [ "$3" = el ]; then
	mkdir -p /run/lock/subsys
	if [ -d /lib/lsb ]; then mount -t tmpfs -o mode=0755 tmpfs /lib/lsb; fi
fi
echo ready
# A background command's stdin would be /dev/null: cat reads the test's end through fd 3.
exec 3<&0
cat <&3 >/dev/null 3<&- &
exec 3<&-
wait
"#;

/// A step's outcome.
#[derive(Debug)]
struct StepOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Namespaces {
    fn enter(family: Family, layout: &Layout) -> Namespaces {
        let which = if family == Family::El { "el" } else { "debian" };
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--mount-proc",
                "--",
                "/bin/dash",
            ])
            .args(["-c", LEADER, "leader"])
            .arg(&layout.etc)
            .arg(&layout.bin)
            .arg(which)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run unshare");
        let stdin = holder.stdin.take();
        let stdout = holder.stdout.take().expect("the leader's stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(STEP_TIMEOUT).unwrap_or_default();
        let unshare = holder.id();
        let leader = all_processes().iter().find(|p| p.ppid == unshare).map(|p| p.pid);
        let out = layout.config.with_file_name("step");
        let mut ns = Namespaces { holder, stdin, leader: 0, out };
        assert_eq!(line.trim(), "ready", "the {family:?} layout is mounted");
        ns.leader = leader.expect("unshare's child, pid 1 inside");
        ns
    }

    /// Runs `argv` inside, with the environment an administrator's shell would give it (no systemd hint).
    fn run(&self, argv: &[&str]) -> StepOutput {
        let stdout = self.out.with_extension("out");
        let stderr = self.out.with_extension("err");
        let mut child = Command::new("nsenter")
            .args(["--target", &self.leader.to_string(), "--mount", "--pid", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("create the step's stdout"))
            .stderr(fs::File::create(&stderr).expect("create the step's stderr"))
            .spawn()
            .expect("run nsenter");
        let status = support::wait_or_kill(&mut child, STEP_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
        StepOutput {
            status,
            stdout: fs::read_to_string(&stdout).unwrap_or_default(),
            stderr: fs::read_to_string(&stderr).unwrap_or_default(),
        }
    }

    fn sh(&self, script: &str) -> StepOutput {
        self.run(&["/bin/sh", "-c", script])
    }

    /// Runs `argv` inside; it exits with `code` and says `expected` (stdout or stderr).
    fn expect(&self, argv: &[&str], code: i32, expected: &str) -> StepOutput {
        let output = self.run(argv);
        eprintln!("$ {}: {}\n{}{}", argv.join(" "), output.status, output.stdout, output.stderr);
        assert_eq!(output.status.code(), Some(code), "`{}` exits {code}: {output:?}", argv.join(" "));
        assert!(
            output.stdout.contains(expected) || output.stderr.contains(expected),
            "`{}` says {expected:?}: {output:?}",
            argv.join(" ")
        );
        output
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Err(e) = support::wait_or_kill(&mut self.holder, Duration::from_secs(10)) {
            eprintln!("the namespaces' leader: {e}");
        }
    }
}

fn wait_serves(port: u16, backend: &Backend) {
    let start = backend.hits();
    wait_until(SETTLE, &format!("port {port} to serve through the init script's proxymgr"), || {
        http_get(port).is_ok() && backend.hits() > start
    });
}

/// The first connection to `listener` within `timeout`, kept open (and never answered) by the caller.
fn accept_within(listener: &TcpListener, timeout: Duration) -> TcpStream {
    listener.set_nonblocking(true).expect("a non-blocking listener");
    wait_for(timeout, "a connection to the silent status endpoint", || listener.accept().ok().map(|(s, _)| s))
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
