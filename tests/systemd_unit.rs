//! systemd does not run on these machines, so `tests/packaging.rs` runs the packaged unit's commands the way
//! systemd would: this module reads a unit file's `[Service]` section and carries out start, reload, restart
//! and stop from its own lines (`Exec*=` with systemd's variable expansion, `KillMode=`, `KillSignal=`,
//! `RestartKillSignal=`, `TimeoutStopSec=`), never from a copy of them.
//!
//! The sandbox is approximated where it can be without systemd, and the rest is said: every command runs with
//! the unit's `CapabilityBoundingSet=` and `NoNewPrivileges=` (`setpriv`), and in a private mount namespace in
//! which every file system but /proc, /sys and /dev is read-only except `ReadWritePaths=` and
//! `RuntimeDirectory=` (`ProtectSystem=strict`), with /tmp and /var/tmp its own (`PrivateTmp=`). Not
//! approximated: the system call filter, the address families, `PrivateDevices=`, `ProtectHome=` and the
//! kernel protections.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A unit file's `[Service]` section: every key's values, in order.
pub struct Unit {
    service: BTreeMap<String, Vec<String>>,
}

/// Prepares the sandbox, proves the file system read-only, and runs the command: `sh -c SANDBOX sh CMD...`
/// with RW (the writable paths) and CAPS (setpriv's arguments) in the environment.
const SANDBOX: &str = r#"set -e
for path in $RW; do
	if [ -d "$path" ]; then mount --bind "$path" "$path"; fi
done
mounts=$(cut -d' ' -f5 /proc/self/mountinfo)
for mount in $mounts; do
	case $mount in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) continue ;; esac
	writable=
	for path in $RW; do [ "$mount" = "$path" ] && writable=1; done
	[ -n "$writable" ] || mount -o remount,bind,ro "$mount" 2>/dev/null || true
done
if [ "$PRIVATE_TMP" = yes ]; then
	mount -t tmpfs -o mode=1777 tmpfs /tmp
	mount -t tmpfs -o mode=1777 tmpfs /var/tmp
fi
if touch /etc/.proxymgr-sandbox-probe 2>/dev/null; then
	rm -f /etc/.proxymgr-sandbox-probe
	echo "the sandbox failed: /etc is writable" >&2
	exit 97
fi
# shellcheck disable=SC2086
exec setpriv $CAPS -- "$@"
"#;

impl Unit {
    pub fn load(path: &Path) -> Unit {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Unit::parse(&text)
    }

    pub fn parse(text: &str) -> Unit {
        let mut service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
            service.entry(key.trim().to_string()).or_default().push(value.trim().to_string());
        }
        Unit { service }
    }

    /// The last value of `key` (systemd's rule for a single-valued setting).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.service.get(key).and_then(|values| values.last()).map(String::as_str)
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.service.get(key).map(|values| values.iter().map(String::as_str).collect()).unwrap_or_default()
    }

    /// `Environment=`, then each `EnvironmentFile=` in order (a leading `-`: the file may be missing).
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for assignment in self.all("Environment") {
            if let Some((key, value)) = assignment.split_once('=') {
                env.insert(key.to_string(), value.to_string());
            }
        }
        for file in self.all("EnvironmentFile") {
            let (optional, file) = file.strip_prefix('-').map_or((false, file), |f| (true, f));
            let text = match fs::read_to_string(file) {
                Ok(text) => text,
                Err(_) if optional => continue,
                Err(e) => panic!("EnvironmentFile={file}: {e}"),
            };
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                if let Some((key, value)) = line.split_once('=') {
                    env.insert(key.trim().to_string(), value.trim().trim_matches('"').to_string());
                }
            }
        }
        env
    }

    /// The signal a setting names (`SIGTERM`, `SIGUSR2`, ...); `default` when the unit does not set it.
    pub fn signal(&self, key: &str, default: nix::sys::signal::Signal) -> nix::sys::signal::Signal {
        self.get(key).map_or(default, |name| name.parse().unwrap_or_else(|e| panic!("{key}={name}: {e:?}")))
    }

    /// `TimeoutStopSec=` (seconds only, as the packaged unit writes it).
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.get("TimeoutStopSec").map_or(90, |s| s.parse().expect("TimeoutStopSec")))
    }

    /// The paths the service may write: `ReadWritePaths=` (a leading `-`: may be missing) and
    /// `/run/<RuntimeDirectory=>`, created here as systemd would with `RuntimeDirectoryMode=`.
    pub fn writable_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .all("ReadWritePaths")
            .iter()
            .flat_map(|line| line.split_whitespace())
            .map(|path| PathBuf::from(path.trim_start_matches('-')))
            .collect();
        for dir in self.all("RuntimeDirectory").iter().flat_map(|line| line.split_whitespace()) {
            let path = Path::new("/run").join(dir);
            fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            if let Some(mode) = self.get("RuntimeDirectoryMode") {
                use std::os::unix::fs::PermissionsExt;
                let mode = u32::from_str_radix(mode, 8).expect("RuntimeDirectoryMode");
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .expect("chmod the runtime directory");
            }
            paths.push(path);
        }
        paths
    }

    /// setpriv's arguments for `CapabilityBoundingSet=` and `NoNewPrivileges=`.
    pub fn privileges(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(set) = self.get("CapabilityBoundingSet") {
            let caps: Vec<String> = set
                .split_whitespace()
                .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
                .collect();
            args.push("--bounding-set".to_string());
            args.push(format!("-all,{}", caps.join(",")));
            args.push("--inh-caps".to_string());
            args.push("-all".to_string());
        }
        if self.get("NoNewPrivileges") == Some("yes") {
            args.push("--no-new-privs".to_string());
        }
        args
    }

    /// The unit's command line `line` as systemd runs it: words split, quotes removed, `$$` made `$`, `${VAR}`
    /// replaced by one word, a word that is all `$VAR` by the variable's words (none when it is empty).
    pub fn expand(line: &str, env: &BTreeMap<String, String>) -> Vec<String> {
        let mut words = Vec::new();
        for (word, quoted) in split_words(line) {
            if !quoted {
                if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
                    words.extend(
                        env.get(name).map(String::as_str).unwrap_or("").split_whitespace().map(String::from),
                    );
                    continue;
                }
            }
            words.push(expand_braces(&word, env));
        }
        words
    }

    /// A command of the unit, in the sandbox, as root.
    pub fn command(&self, argv: &[String], log: &Path) -> Command {
        let rw: Vec<String> =
            self.writable_paths().iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", SANDBOX, "sh"])
            .args(argv)
            .env("RW", rw.join(" "))
            .env("CAPS", self.privileges().join(" "))
            .env("PRIVATE_TMP", self.get("PrivateTmp").unwrap_or("no"))
            .stdin(Stdio::null())
            .current_dir("/");
        let (out, err) = crate::support::append_log(log);
        command.stdout(out).stderr(err);
        command
    }

    /// Runs each of the unit's `key=` lines (ExecStartPre, ExecStartPost, ExecReload) in order, as systemd
    /// does: the first that fails ends it. `mainpid` is `$MAINPID`.
    pub fn run_all(
        &self,
        key: &str,
        env: &BTreeMap<String, String>,
        mainpid: Option<u32>,
        log: &Path,
    ) -> Result<(), String> {
        let mut env = env.clone();
        if let Some(pid) = mainpid {
            env.insert("MAINPID".into(), pid.to_string());
        }
        for line in self.all(key) {
            let argv = Unit::expand(line, &env);
            let mut command = self.command(&argv, log);
            // systemd passes $MAINPID in the environment as well.
            if let Some(pid) = mainpid {
                command.env("MAINPID", pid.to_string());
            }
            let status =
                run_bounded(command, Duration::from_secs(60)).map_err(|e| format!("{key}={line}: {e}"))?;
            if !status.success() {
                return Err(format!("{key}={line}: {status}"));
            }
        }
        Ok(())
    }
}

/// A service started from the unit: its main process (`ExecStart=`), as systemd tracks it.
pub struct Service<'a> {
    pub unit: &'a Unit,
    pub main: Child,
    env: BTreeMap<String, String>,
    log: PathBuf,
}

impl<'a> Service<'a> {
    /// `systemctl start`: ExecStartPre, ExecStart, ExecStartPost.
    pub fn start(unit: &'a Unit, log: &Path) -> Result<Service<'a>, String> {
        let env = unit.environment();
        unit.run_all("ExecStartPre", &env, None, log)?;
        let start = unit.get("ExecStart").ok_or("no ExecStart=")?;
        let argv = Unit::expand(start, &env);
        let main = unit.command(&argv, log).spawn().map_err(|e| format!("ExecStart={start}: {e}"))?;
        let service = Service { unit, main, env, log: log.to_path_buf() };
        unit.run_all("ExecStartPost", &service.env, Some(service.pid()), log)?;
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.main.id()
    }

    /// `systemctl reload`: ExecReload's lines.
    pub fn reload(&self) -> Result<(), String> {
        self.unit.run_all("ExecReload", &self.env, Some(self.pid()), &self.log)
    }

    /// The stop half of `systemctl stop` (`KillSignal=`) or `systemctl restart` (`RestartKillSignal=`, else
    /// `KillSignal=`): the signal to the main process alone under `KillMode=process` (the only mode this
    /// runner knows), then its exit, within `TimeoutStopSec=`.
    pub fn stop(mut self, restart: bool) -> Result<ExitStatus, String> {
        let mode = self.unit.get("KillMode").unwrap_or("control-group");
        if mode != "process" {
            return Err(format!("KillMode={mode}: this runner carries out KillMode=process only"));
        }
        let kill = self.unit.signal("KillSignal", nix::sys::signal::Signal::SIGTERM);
        let signal = if restart { self.unit.signal("RestartKillSignal", kill) } else { kill };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .map_err(|e| format!("{signal}: {e}"))?;
        crate::support::wait_or_kill(&mut self.main, self.unit.stop_timeout())
            .map_err(|e| format!("the main process after {signal} and TimeoutStopSec: {e}"))
    }

    /// `systemctl restart`: the stop half with `RestartKillSignal=`, then a start.
    pub fn restart(self) -> Result<Service<'a>, String> {
        let (unit, log) = (self.unit, self.log.clone());
        let status = self.stop(true)?;
        if !status.success() {
            return Err(format!("the main process exited with {status} on the restart's signal"));
        }
        Service::start(unit, &log)
    }
}

fn run_bounded(mut command: Command, timeout: Duration) -> Result<ExitStatus, String> {
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    crate::support::wait_or_kill(&mut child, timeout)
}

/// Words of a command line, with whether each was quoted ('...' or "...", as a whole word).
fn split_words(line: &str) -> Vec<(String, bool)> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '\'' || c == '"' {
            chars.next();
            let word: String = chars.by_ref().take_while(|&d| d != c).collect();
            words.push((word, true));
        } else {
            let mut word = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                word.push(d);
                chars.next();
            }
            words.push((word, false));
        }
    }
    words
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$$` → `$`, `${VAR}` → its value, anything else as it is.
fn expand_braces(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some((name, tail)) = after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn command_lines_expand_as_systemd_expands_them() {
    let env: BTreeMap<String, String> =
        [("CONFIG", "/etc/p m.yml"), ("DAEMON_OPTS", "-d  -x"), ("EMPTY", ""), ("MAINPID", "42")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(
        Unit::expand("/usr/bin/p -c ${CONFIG} $DAEMON_OPTS $EMPTY", &env),
        ["/usr/bin/p", "-c", "/etc/p m.yml", "-d", "-x"]
    );
    assert_eq!(Unit::expand("/bin/kill -HUP $MAINPID", &env), ["/bin/kill", "-HUP", "42"]);
    assert_eq!(
        Unit::expand("/bin/sh -c 'n=$$((n + 1)); read x </proc/$$MAINPID/status'", &env),
        ["/bin/sh", "-c", "n=$((n + 1)); read x </proc/$MAINPID/status"]
    );
}

#[test]
fn the_packaged_unit_hands_over_on_restart_and_stops_everything_on_stop() {
    let unit = Unit::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.service"));
    use nix::sys::signal::Signal;
    assert_eq!(
        unit.get("KillMode"),
        Some("process"),
        "systemd signals proxymgr alone; HAProxy is its to stop"
    );
    assert_eq!(unit.signal("KillSignal", Signal::SIGTERM), Signal::SIGTERM, "stop: proxymgr stops HAProxy");
    assert_eq!(unit.signal("RestartKillSignal", Signal::SIGTERM), Signal::SIGUSR2, "restart: a hand-over");
    assert!(unit.all("ExecReload").iter().any(|l| l.contains("--check")), "a reload checks the config first");
    let privileges = unit.privileges();
    assert!(privileges.contains(&"--no-new-privs".to_string()), "{privileges:?}");
}

#[test]
fn the_packaged_unit_gives_away_no_more_than_it_needs() {
    // Issue 13 §2: `systemd-analyze security` scores the unit 5.0 or lower (it was 9.6, as Debian's own
    // haproxy.service is). --threshold makes it fail above 50 (tenths).
    if !crate::support::require("systemd-analyze") {
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.service");
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=50"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&output.stdout);
    let score = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("no score");
    eprintln!("{score}");
    assert!(output.status.success(), "above 5.0: {score}\n{text}{}", String::from_utf8_lossy(&output.stderr));
}

/// Issue 14 §4: the systemd each directive of the packaged unit needs (the first upstream version that knows it,
/// from systemd's NEWS and man pages; 0: older than any distribution here). A directive a systemd does not know
/// is not an error: it logs "Unknown key name ..., ignoring" and runs the unit without it.
const SYSTEMD_SINCE: &[(&str, u32)] = &[
    ("Description", 0),
    ("Documentation", 0),
    ("Wants", 0),
    ("After", 0),
    ("Conflicts", 0),
    ("WantedBy", 0),
    ("Type", 0),
    ("Environment", 0),
    ("EnvironmentFile", 0),
    ("ExecStartPre", 0),
    ("ExecStart", 0),
    ("ExecStartPost", 0),
    ("ExecReload", 0),
    ("KillMode", 0),
    ("KillSignal", 0),
    ("TimeoutStopSec", 0),
    ("Restart", 0),
    ("RestartSec", 0),
    ("RestartPreventExitStatus", 0),
    ("CapabilityBoundingSet", 0),
    ("PrivateTmp", 0),
    ("UMask", 0),
    ("NoNewPrivileges", 187),
    ("SystemCallFilter", 187),
    ("PrivateDevices", 209),
    ("SystemCallErrorNumber", 209),
    ("SystemCallArchitectures", 209),
    ("RestrictAddressFamilies", 211),
    ("RuntimeDirectory", 211),
    ("RuntimeDirectoryMode", 211),
    ("ProtectHome", 214),
    ("ProtectSystem", 214),
    ("ReadWritePaths", 231),
    ("RestrictRealtime", 231),
    ("ProtectKernelTunables", 232),
    ("ProtectKernelModules", 232),
    ("ProtectControlGroups", 232),
    ("RestrictNamespaces", 233),
    ("LockPersonality", 235),
    ("RuntimeDirectoryPreserve", 235),
    ("PrivateMounts", 239),
    ("RestrictSUIDSGID", 242),
    ("ProtectHostname", 242),
    ("ProtectKernelLogs", 244),
    ("RestartKillSignal", 244),
    ("ProtectClock", 245),
];

/// Values that need a newer systemd than their directive: `ProtectSystem=strict` (232) and the
/// `@system-service` system call group (239).
const SYSTEMD_VALUE_SINCE: &[(&str, &str, u32)] =
    &[("ProtectSystem", "strict", 232), ("SystemCallFilter", "@system-service", 239)];

/// EL 8's systemd (RHEL, Rocky, Alma 8), the oldest of the distributions the packages cover.
const EL8_SYSTEMD: u32 = 239;
/// EL 9's systemd, and Debian 12's (this machine's: `systemd-analyze verify` speaks for both); Ubuntu 22.04 has
/// 249, Ubuntu 24.04 255, Debian 13 257.
const EL9_SYSTEMD: u32 = 252;
/// What EL 8's systemd ignores: four of the sandbox's protections (the clock, the host name, the kernel log,
/// SUID/SGID files) and the hand-over on restart, which becomes a stop and a start there.
const UNKNOWN_TO_EL8: &[&str] =
    &["ProtectClock", "ProtectHostname", "ProtectKernelLogs", "RestartKillSignal", "RestrictSUIDSGID"];

#[test]
fn every_directive_of_the_unit_is_known_to_el_9_and_el_8_ignores_only_hardening_and_the_hand_over() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.service");
    let text = fs::read_to_string(&path).expect("read the packaged unit");
    let mut unknown_to_el8: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        let since = SYSTEMD_SINCE.iter().find(|(name, _)| *name == key).map(|(_, since)| *since);
        let since = since.unwrap_or_else(|| {
            panic!("{key}= is new to the unit: add the first systemd version that knows it to SYSTEMD_SINCE")
        });
        let value_since = SYSTEMD_VALUE_SINCE
            .iter()
            .filter(|(name, word, _)| *name == key && value.split_whitespace().any(|w| w == *word))
            .map(|(_, _, since)| *since)
            .max()
            .unwrap_or(0);
        let since = since.max(value_since);
        assert!(since <= EL9_SYSTEMD, "{line}: needs systemd {since}, EL 9 has {EL9_SYSTEMD}");
        if since > EL8_SYSTEMD && !unknown_to_el8.contains(&key) {
            unknown_to_el8.push(key);
        }
    }
    unknown_to_el8.sort_unstable();
    assert_eq!(
        unknown_to_el8, UNKNOWN_TO_EL8,
        "what EL 8's systemd {EL8_SYSTEMD} ignores (packaging/README.md says so)"
    );
}

/// `systemd-analyze verify` (this machine's systemd, 252: EL 9's and Debian 12's) accepts the unit. It checks
/// that the commands exist, so `/usr/bin/proxymgr` is this build's, laid over /usr/bin in a private mount
/// namespace (nothing is installed).
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !crate::support::require("systemd-analyze") || !crate::support::require("unshare") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: /usr/bin/proxymgr is laid over /usr/bin in a mount namespace, which takes root");
        return;
    }
    let layer = tempfile::tempdir().expect("a temporary directory");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_proxymgr"), layer.path().join("proxymgr"))
        .expect("link proxymgr");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.service");
    let script =
        r#"mount -t overlay overlay -o "lowerdir=$1:/usr/bin" /usr/bin && exec systemd-analyze verify "$2""#;
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"])
        .arg(layer.path())
        .arg(&unit)
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze verify");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "systemd-analyze verify: {}\n{said}", output.status);
    assert!(said.trim().is_empty(), "systemd-analyze verify has something to say:\n{said}");
}
