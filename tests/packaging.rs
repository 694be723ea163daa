//! Issue 6: the packages. As root, with a deb built (`make deb`; `make test` builds it when root), the deb is
//! installed with dpkg, proxymgr runs through its init script against a real ZooKeeper and serves through
//! HAProxy, and the purge leaves nothing behind. The rpm is inspected with `rpm -qp` and installed into a
//! scratch root. Every init and maintainer script is checked as POSIX sh.
//!
//! The deb test changes the machine: it installs and purges the `proxymgr` package, and the package stops and
//! disables the distribution's haproxy service. A guard puts everything back even when the test fails: it
//! stops proxymgr, purges the package, restores haproxy's rc and systemd links (and starts haproxy if it ran),
//! and restores any of the package's paths that existed before (moved aside meanwhile). It refuses to touch a
//! `proxymgr` package it did not install.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::load::Load;
use crate::support::{
    self, all_processes, cmdline, find_on_path, http_get, listening_inodes, pid_alive, reserve_port,
    wait_until, Backend, Zk,
};
use crate::systemd_unit::{Service, Unit};

const INIT: &str = "/etc/init.d/proxymgr";
const CONFIG: &str = "/etc/proxymgr/proxymgr.yml";
const HAPROXY_CFG: &str = "/etc/proxymgr/haproxy.cfg";
const DEFAULTS: &str = "/etc/default/proxymgr";
const PIDFILE: &str = "/run/proxymgr/proxymgr.pid";
const LOG: &str = "/var/log/proxymgr/proxymgr.log";
const BINARY: &str = "/usr/bin/proxymgr";
const UNIT: &str = "/lib/systemd/system/proxymgr.service";
/// Where the unit's commands log here (systemd would send it to the journal).
const UNIT_LOG: &str = "/var/log/proxymgr/unit.log";

/// Every path the package or proxymgr creates: none may be left after the purge.
const PACKAGE_PATHS: &[&str] = &[
    "/etc/proxymgr",
    INIT,
    DEFAULTS,
    "/etc/logrotate.d/proxymgr",
    BINARY,
    "/lib/systemd/system/proxymgr.service",
    "/usr/share/doc/proxymgr",
    "/var/lib/proxymgr",
    "/var/log/proxymgr",
    "/run/proxymgr",
];

/// The first line of the config the test writes; a `proxymgr` package whose config starts with it was left by
/// an interrupted run of this test and may be purged.
const MARKER: &str = "# written by tests/packaging.rs";

/// dpkg and rpm runs, which may wait for a lock or run maintainer scripts.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(180);
/// One init script action; `stop` may take STOP_TIMEOUT (30 s) and a little more.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a change may take to show in what HAProxy serves.
const SETTLE: Duration = Duration::from_secs(30);

/// LSB status exit codes.
const RUNNING: i32 = 0;
const NOT_RUNNING: i32 = 3;
/// LSB start exit code: the program is not configured.
const NOT_CONFIGURED: i32 = 6;

#[test]
fn the_deb_runs_proxymgr_through_its_init_script_and_purges_clean() {
    let Some(deb) = built_package("deb", "debian", "deb") else { return };
    if !support::require("dpkg") || !support::require("haproxy") || !support::require("zookeeper") {
        return;
    }
    let zk = Zk::start();
    zk.create("/service_config", "");
    // Declared after the ZooKeeper, so dropped before it: proxymgr stops while its registry still answers.
    let mut installed = Installed::install(&deb);

    // Installed and registered, never started on the packaged config.
    assert!(
        rc_links("proxymgr").iter().any(|link| link.to_string_lossy().starts_with("/etc/rc2.d/S")),
        "update-rc.d registered the init script: {:?}",
        rc_links("proxymgr")
    );
    if Path::new("/etc/init.d/haproxy").exists() {
        let links = rc_links("haproxy");
        assert!(
            !links.iter().any(|link| link.file_name().is_some_and(|n| n.to_string_lossy().starts_with('S'))),
            "the distribution's haproxy service is disabled: {links:?}"
        );
    }
    assert_eq!(init_status(), NOT_RUNNING, "the package did not start proxymgr");
    assert!(read(DEFAULTS).contains("\nENABLED=0\n"), "{}", read(DEFAULTS));
    let output = init("start");
    assert!(output.status.success(), "{}", describe("start with ENABLED=0", &output));
    assert!(text(&output).contains("ENABLED"), "{}", describe("start with ENABLED=0", &output));
    assert_eq!(init_status(), NOT_RUNNING, "start with ENABLED=0 starts nothing");

    // Enabled, but a config that does not pass --check: start refuses it.
    set_enabled(true);
    write(CONFIG, &format!("{MARKER}\nhaproxy: [\n"));
    let output = init("start");
    assert_eq!(
        output.status.code(),
        Some(NOT_CONFIGURED),
        "{}",
        describe("start with a bad config", &output)
    );
    assert!(text(&output).contains("--check"), "{}", describe("start with a bad config", &output));
    assert_eq!(init_status(), NOT_RUNNING);

    // Configured: start, status, a service served through HAProxy.
    write(CONFIG, &config_yaml(&zk.connect_string(), 1000));
    let output = init("start");
    assert!(output.status.success(), "{}", describe("start", &output));
    assert_eq!(init_status(), RUNNING);
    let pid = pidfile_pid().expect("start wrote the pidfile");
    assert_eq!(exe(pid), BINARY, "the pidfile names the packaged proxymgr");
    assert!(catches_sighup(pid), "the pidfile appears only once proxymgr catches SIGHUP");

    let backend = Backend::start("packaged");
    let port = reserve_port();
    zk.create("/services/packaged/b1", &format!(r#"{{"address":"127.0.0.1","port":{}}}"#, backend.port()));
    zk.create(
        "/service_config/packaged",
        &format!(
            r#"{{"type":"zookeeper","server":"{}","path":"/services/packaged","port":{port},
                "listen_options":["mode http"]}}"#,
            zk.connect_string()
        ),
    );
    wait_serves(port, "packaged");
    // The new config becomes haproxy.cfg once the HAProxy started on it answers, a few ms after it serves.
    wait_until(SETTLE, "haproxy.cfg to have the service", || read(HAPROXY_CFG).contains("listen packaged"));
    assert!(read(LOG).contains(" with HAProxy "), "proxymgr logs to {LOG}: {}", read(LOG));

    // reload: SIGHUP, the changed config applied by the same proxymgr, which serves on.
    write(CONFIG, &config_yaml(&zk.connect_string(), 1001));
    let output = init("reload");
    assert!(output.status.success(), "{}", describe("reload", &output));
    wait_until(SETTLE, "proxymgr to log the SIGHUP", || {
        read(LOG).contains(&format!("SIGHUP: re-reading {CONFIG}"))
    });
    wait_until(SETTLE, "haproxy.cfg to carry the reloaded global section", || {
        read(HAPROXY_CFG).contains("maxconn 1001")
    });
    assert_eq!(pidfile_pid(), Some(pid), "reload keeps proxymgr's pid");
    assert!(pid_alive(pid), "proxymgr survives the reload");
    assert_eq!(init_status(), RUNNING);
    wait_serves(port, "packaged");

    // restart (issue 13): a hand-over. HAProxy serves throughout, the listening socket itself goes to the new
    // proxymgr, and not one request fails.
    let pid = hand_over_under_load(port, &backend, "across the init script's restart", pid, || {
        let output = init("restart");
        assert!(output.status.success(), "{}", describe("restart", &output));
        assert!(text(&output).contains("Handing proxymgr over"), "{}", describe("restart", &output));
        pidfile_pid().expect("restart wrote the pidfile")
    });
    assert_eq!(init_status(), RUNNING);

    // The package installed again over itself (an upgrade's path): the operator's files stay as they are and
    // proxymgr serves on (postinst restarts it unless /usr/sbin/policy-rc.d forbids, as in containers).
    let config_before = read(CONFIG);
    let defaults_before = read(DEFAULTS);
    dpkg(&["-i", &deb.to_string_lossy()]);
    assert_eq!(read(CONFIG), config_before, "an upgrade keeps the edited proxymgr.yml");
    assert_eq!(read(DEFAULTS), defaults_before, "an upgrade keeps the edited defaults file");
    assert_eq!(init_status(), RUNNING, "proxymgr runs after the upgrade");
    wait_serves(port, "packaged");

    // An upgrade to the next revision, as on a real host: the maintainer scripts may restart services (this
    // machine's policy-rc.d forbids it, as container images do, so an allowing one is bind-mounted over it in a
    // private mount namespace for dpkg). postinst restarts the running proxymgr on the new binary: a hand-over.
    let next =
        built_package("deb-next", "debian-next", "deb").expect("make deb-next builds the next revision");
    let pid = hand_over_under_load(port, &backend, "across an upgrade of the deb", pid, || {
        upgrade(&next);
        pidfile_pid().expect("the upgrade's restart wrote the pidfile")
    });
    assert_eq!(installed_version(), "0.1.0-2", "dpkg installed the next revision");
    assert_eq!(exe(pid), BINARY, "the new proxymgr runs the upgraded binary");
    assert_eq!(init_status(), RUNNING);

    // stop: status 3, nothing of the package runs, the port is closed.
    assert!(!packaged_processes().is_empty(), "proxymgr and its HAProxy run before the stop");
    let output = init("stop");
    assert!(output.status.success(), "{}", describe("stop", &output));
    assert_eq!(init_status(), NOT_RUNNING);
    assert!(!Path::new(PIDFILE).exists(), "stop removes the pidfile");
    wait_until(Duration::from_secs(10), "no proxymgr or HAProxy of the package left", || {
        packaged_processes().is_empty()
    });
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the service port is closed after stop");
    assert!(read(LOG).contains("stopped"), "{}", read(LOG));

    // The systemd unit's commands, carried out as systemd would (it does not run here: tests/systemd_unit.rs),
    // in an approximation of the unit's sandbox: its capabilities, no new privileges, and a read-only file
    // system but for the paths it names.
    let unit = Unit::load(Path::new(UNIT));
    let unit_log = Path::new(UNIT_LOG);
    let service =
        Service::start(&unit, unit_log).unwrap_or_else(|e| panic!("start: {e}\n{}", read(UNIT_LOG)));
    wait_serves(port, "packaged");
    let pid = service.pid();
    // The sandbox holds: proxymgr runs with the unit's capabilities alone (CAP_KILL, CAP_SETGID, CAP_SETUID,
    // CAP_NET_BIND_SERVICE: bits 5, 6, 7 and 10) and no new privileges, and HAProxy has dropped to its user.
    let status = read(&format!("/proc/{pid}/status"));
    assert!(status.contains("\nCapBnd:\t00000000000004e0\n"), "the unit's capability bounding set: {status}");
    assert!(status.contains("\nNoNewPrivs:\t1\n"), "NoNewPrivileges: {status}");
    let haproxy = packaged_haproxy();
    let haproxy_status = read(&format!("/proc/{}/status", haproxy[0]));
    assert!(!haproxy_status.contains("\nUid:\t0\t"), "HAProxy runs as its user, not root: {haproxy_status}");
    write(CONFIG, &config_yaml(&zk.connect_string(), 1002));
    service.reload().unwrap_or_else(|e| panic!("reload: {e}\n{}", read(UNIT_LOG)));
    wait_until(SETTLE, "the unit's reload to reach haproxy.cfg", || {
        read(HAPROXY_CFG).contains("maxconn 1002")
    });
    assert!(pid_alive(pid), "proxymgr survives the unit's reload");
    let mut running = Some(service);
    hand_over_under_load(port, &backend, "across the unit's restart", pid, || {
        let service = running.take().expect("the service runs");
        let service = service.restart().unwrap_or_else(|e| panic!("restart: {e}\n{}", read(UNIT_LOG)));
        let pid = service.pid();
        running = Some(service);
        pid
    });
    let service = running.take().expect("the service runs");
    let status = service.stop(false).unwrap_or_else(|e| panic!("stop: {e}\n{}", read(UNIT_LOG)));
    assert!(status.success(), "the unit's stop: proxymgr exits with {status}");
    wait_until(
        Duration::from_secs(10),
        "no proxymgr or HAProxy of the package left after the unit's stop",
        || packaged_processes().is_empty(),
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the service port is closed after the unit's stop"
    );

    // purge: nothing left behind.
    installed.purge();
    let left: Vec<&str> = PACKAGE_PATHS.iter().copied().filter(|path| exists(path)).collect();
    assert!(left.is_empty(), "the purge left {left:?}");
    assert_eq!(rc_links("proxymgr"), Vec::<PathBuf>::new(), "the purge removes the init script links");
    let status = run("dpkg", &["-s", "proxymgr"], PACKAGE_TIMEOUT).expect("run dpkg -s");
    assert!(!status.status.success(), "dpkg -s proxymgr fails after the purge");
    assert_eq!(packaged_processes(), Vec::<u32>::new());
}

#[test]
fn the_rpm_holds_the_files_scripts_and_dependencies() {
    let Some(rpm) = built_package("rpm", "generate-rpm", "rpm") else { return };
    if !is_root() && find_on_path("rpm").is_none() {
        eprintln!("skipping: rpm is not installed (make package-tools installs it)");
        return;
    }
    if !support::require("rpm") {
        return;
    }
    let rpm_path = rpm.to_string_lossy().into_owned();
    let query = |args: &[&str]| -> String {
        let mut all: Vec<&str> = vec!["-qp"];
        all.extend_from_slice(args);
        all.push(&rpm_path);
        let output = run("rpm", &all, PACKAGE_TIMEOUT).expect("run rpm");
        assert!(output.status.success(), "{}", describe(&format!("rpm {}", all.join(" ")), &output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let files = query(&["-l"]);
    for file in [
        BINARY,
        "/etc/rc.d/init.d/proxymgr",
        "/etc/proxymgr/proxymgr.yml",
        "/etc/sysconfig/proxymgr",
        "/usr/lib/systemd/system/proxymgr.service",
        "/etc/logrotate.d/proxymgr",
        "/usr/share/doc/proxymgr/examples/proxymgr.yml.example",
    ] {
        assert!(files.lines().any(|line| line == file), "rpm -qpl lists {file}:\n{files}");
    }
    // Mode, flags (c: config, n: noreplace) and name of every file.
    let modes = query(&["--qf", "[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    for expected in [
        "-rwxr-xr-x  /usr/bin/proxymgr",
        "-rwxr-xr-x  /etc/rc.d/init.d/proxymgr",
        "-rw-r--r-- cn /etc/proxymgr/proxymgr.yml",
        "-rw-r--r-- cn /etc/sysconfig/proxymgr",
    ] {
        assert!(modes.lines().any(|line| line == expected), "{expected:?} in:\n{modes}");
    }

    let scripts = query(&["--scripts"]);
    for expected in ["postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"] {
        assert!(scripts.contains(expected), "{expected:?} in rpm -qp --scripts:\n{scripts}");
    }
    assert!(scripts.contains("chkconfig --add proxymgr"), "{scripts}");
    assert!(scripts.contains("chkconfig --del proxymgr"), "{scripts}");
    assert!(scripts.contains("haproxy"), "the scripts disable the haproxy service:\n{scripts}");

    let requires = query(&["-R"]);
    assert!(requires.lines().any(|line| line.trim() == "haproxy >= 1.8"), "{requires}");
    assert!(requires.lines().any(|line| line.trim() == "/bin/sh"), "{requires}");

    // A scratch root: no dependencies there and no /bin/sh to run the scriptlets, hence --nodeps --noscripts.
    // rpm sets the files' owners, which takes root.
    if !is_root() {
        eprintln!("skipping the scratch --root install: it takes root");
        return;
    }
    let root =
        tempfile::Builder::new().prefix("proxymgr-rpm-root-").tempdir().expect("a temporary directory");
    let root_path = root.path().to_string_lossy().into_owned();
    let rpm_root = |args: &[&str]| -> Output {
        let mut all: Vec<&str> = vec!["--root", &root_path];
        all.extend_from_slice(args);
        run("rpm", &all, PACKAGE_TIMEOUT).expect("run rpm")
    };
    let output = rpm_root(&["--initdb"]);
    assert!(output.status.success(), "{}", describe("rpm --initdb", &output));
    let output = rpm_root(&["-i", "--nodeps", "--noscripts", &rpm_path]);
    assert!(output.status.success(), "{}", describe("rpm --root -i", &output));
    for file in files.lines() {
        assert!(
            root.path().join(file.trim_start_matches('/')).is_file(),
            "{file} installed under {root_path}"
        );
    }
    let output = rpm_root(&["-V", "--nodeps", "proxymgr"]);
    assert!(output.status.success(), "{}", describe("rpm -V", &output));
    let output = rpm_root(&["-e", "--nodeps", "--noscripts", "proxymgr"]);
    assert!(output.status.success(), "{}", describe("rpm -e", &output));
    for file in files.lines() {
        assert!(!root.path().join(file.trim_start_matches('/')).exists(), "{file} erased from {root_path}");
    }
}

/// Issue 14 §4: the deb's dependencies, read without installing it. It depends on the distribution's haproxy
/// (1.8 and later), and on no glibc newer than the oldest of the deb's distributions has (Ubuntu 22.04's 2.35;
/// Debian 12 has 2.36).
#[test]
fn the_deb_depends_on_haproxy_1_8_and_a_glibc_every_distribution_has() {
    let Some(deb) = built_package("deb", "debian", "deb") else { return };
    if !support::require("dpkg-deb") {
        return;
    }
    let output = run("dpkg-deb", &["--field", &deb.to_string_lossy(), "Depends"], PACKAGE_TIMEOUT)
        .expect("run dpkg-deb --field");
    assert!(output.status.success(), "{}", describe("dpkg-deb --field Depends", &output));
    let depends = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let depends: Vec<&str> = depends.split(',').map(str::trim).collect();
    assert!(depends.contains(&"haproxy (>= 1.8)"), "Depends: {depends:?}");
    for dependency in &depends {
        if let Some(version) = dependency.strip_prefix("libc6 (>= ").and_then(|v| v.strip_suffix(')')) {
            let version: Vec<u32> = version.split('.').filter_map(|part| part.parse().ok()).collect();
            assert!(version.as_slice() <= [2, 35].as_slice(), "Ubuntu 22.04 has glibc 2.35: {depends:?}");
        }
    }
}

/// The newest glibc EL 8 has (RHEL, Rocky and Alma 8: glibc 2.28; EL 9 has 2.34). `make rpm` links the rpm's
/// binary against it (cargo zigbuild), so that rpm's automatic requires name no newer symbol version.
const EL8_GLIBC: [u32; 2] = [2, 28];

/// The libraries an EL 8 or 9 base system has (glibc, libgcc): the only ones the rpm's binary may need.
const EL_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "libm.so.6",
    "librt.so.1",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
];

/// The rpmlib features the rpm may require: ones EL 8's rpm (4.14, built with zstd) provides.
const EL8_RPMLIB: &[&str] = &[
    "CompressedFileNames",
    "FileDigests",
    "PayloadFilesHavePrefix",
    "PayloadIsZstd",
    "PayloadIsXz",
    "PayloadIsBzip2",
    "PayloadIsLzma",
    "LargeFiles",
    "RichDependencies",
    "FileCaps",
];

/// Issue 14 §4: the rpm installs on EL 8 and 9. It requires the distribution's haproxy (1.8 and later), no
/// glibc symbol version newer than EL 8's 2.28, no library beyond glibc's and libgcc's and no rpm feature EL
/// 8's rpm lacks; and the binary it carries (read out of the payload) needs no newer glibc either, and runs.
/// Nothing is installed.
#[test]
fn the_rpm_needs_nothing_el_8_lacks_and_its_binary_runs() {
    let Some(rpm) = built_package("rpm", "generate-rpm", "rpm") else { return };
    if !support::require("rpm") || !support::require("rpm2cpio") || !support::require("readelf") {
        return;
    }
    let rpm_path = rpm.to_string_lossy().into_owned();
    let output = run("rpm", &["-qpR", &rpm_path], PACKAGE_TIMEOUT).expect("run rpm -qpR");
    assert!(output.status.success(), "{}", describe("rpm -qpR", &output));
    let requires = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("rpm -qpR {rpm_path}:\n{requires}");

    assert!(requires.lines().any(|line| line.trim() == "haproxy >= 1.8"), "{requires}");
    let glibc = glibc_versions(&requires);
    assert!(
        glibc.iter().any(|(name, _)| name == "GLIBC_2.2.5"),
        "rpm -qpR names glibc's versions:\n{requires}"
    );
    let too_new: Vec<&String> = glibc
        .iter()
        .filter(|(_, version)| version.as_slice() > EL8_GLIBC.as_slice())
        .map(|(n, _)| n)
        .collect();
    assert!(too_new.is_empty(), "the rpm requires glibc newer than EL 8's 2.28: {too_new:?}\n{requires}");
    for line in requires.lines().map(str::trim) {
        if let Some(library) = line.split('(').next().filter(|name| name.contains(".so")) {
            assert!(EL_LIBRARIES.contains(&library), "the rpm requires {library}, not in EL's base: {line}");
        }
        if let Some(feature) = line.strip_prefix("rpmlib(").and_then(|rest| rest.split(')').next()) {
            assert!(
                EL8_RPMLIB.contains(&feature),
                "the rpm requires rpmlib({feature}), which EL 8's rpm may lack"
            );
        }
    }

    // The binary itself, out of the rpm's payload. rpm2cpio exits 1 here although it wrote the whole archive:
    // it compares what it wrote with the header's archive size, which cargo generate-rpm leaves out (rpm -i
    // does not need it). cpio_file reads only a complete entry.
    let output = run("rpm2cpio", &[&rpm_path], PACKAGE_TIMEOUT).expect("run rpm2cpio");
    let binary = cpio_file(&output.stdout, BINARY).unwrap_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!("no {BINARY} in the rpm's payload: rpm2cpio {}: {stderr}", output.status)
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("proxymgr");
    fs::write(&path, binary).expect("write the rpm's proxymgr");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the rpm's proxymgr");
    }
    let path = path.to_string_lossy().into_owned();
    let output = run("readelf", &["--version-info", "--wide", &path], PACKAGE_TIMEOUT).expect("run readelf");
    assert!(output.status.success(), "{}", describe("readelf --version-info", &output));
    let needed = glibc_versions(&String::from_utf8_lossy(&output.stdout));
    assert!(!needed.is_empty(), "{}", describe("readelf --version-info", &output));
    let newest = needed.iter().map(|(_, version)| version).max().expect("a glibc version");
    assert!(newest.as_slice() <= EL8_GLIBC.as_slice(), "the rpm's binary needs glibc {newest:?}: {needed:?}");

    let output = run(&path, &["--version"], PACKAGE_TIMEOUT).expect("run the rpm's proxymgr --version");
    assert!(output.status.success(), "{}", describe("the rpm's proxymgr --version", &output));
    assert_eq!(text(&output).trim(), format!("proxymgr {}", env!("CARGO_PKG_VERSION")));
    let output = run(&path, &["--help"], PACKAGE_TIMEOUT).expect("run the rpm's proxymgr --help");
    assert!(output.status.success(), "{}", describe("the rpm's proxymgr --help", &output));
    assert!(text(&output).contains("--check"), "{}", describe("the rpm's proxymgr --help", &output));
    // More than the argument parser: the packaged config read and checked, HAProxy run on it.
    if find_on_path("haproxy").is_some() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.yml");
        let output =
            run(&path, &["--check", "-c", &config.to_string_lossy()], PACKAGE_TIMEOUT).expect("run --check");
        assert!(output.status.success(), "{}", describe("the rpm's proxymgr --check", &output));
    }
}

/// Every `GLIBC_x.y[.z]` named in `text` (rpm -qpR, readelf), once each, with its version as numbers.
fn glibc_versions(text: &str) -> Vec<(String, Vec<u32>)> {
    let mut found: Vec<(String, Vec<u32>)> = Vec::new();
    for (start, _) in text.match_indices("GLIBC_") {
        let rest = &text[start + "GLIBC_".len()..];
        let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let digits = rest[..end].trim_end_matches('.');
        let version: Vec<u32> = digits.split('.').filter_map(|part| part.parse().ok()).collect();
        let name = format!("GLIBC_{digits}");
        if !version.is_empty() && !found.iter().any(|(n, _)| *n == name) {
            found.push((name, version));
        }
    }
    found
}

/// The contents of `path` in a cpio archive of the "new ASCII" format (rpm2cpio's output), whose names are
/// `./path`.
fn cpio_file(archive: &[u8], path: &str) -> Option<Vec<u8>> {
    let field = |header: &[u8], index: usize| -> Option<usize> {
        let hex = std::str::from_utf8(header.get(6 + 8 * index..6 + 8 * (index + 1))?).ok()?;
        usize::from_str_radix(hex, 16).ok()
    };
    let align = |n: usize| (n + 3) & !3;
    let mut at = 0;
    while at + 110 <= archive.len() {
        let header = &archive[at..at + 110];
        if !header.starts_with(b"07070") {
            return None;
        }
        let (size, name_size) = (field(header, 6)?, field(header, 11)?);
        let name = archive.get(at + 110..at + 110 + name_size.checked_sub(1)?)?;
        let data = align(at + 110 + name_size);
        let name = String::from_utf8_lossy(name);
        if name == "TRAILER!!!" {
            return None;
        }
        if name.trim_start_matches('.') == path {
            return archive.get(data..data + size).map(<[u8]>::to_vec);
        }
        at = align(data + size);
    }
    None
}

/// Every script the packages run, and the defaults file they source, parse as POSIX sh; checkbashisms, when
/// it is there (`make package-tools` fetches it), finds nothing.
#[test]
fn the_init_and_maintainer_scripts_are_posix_sh() {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let scripts: Vec<PathBuf> = [
        "proxymgr.init",
        "proxymgr.default",
        "debian/postinst",
        "debian/prerm",
        "debian/postrm",
        "rpm/post.sh",
        "rpm/preun.sh",
        "rpm/postun.sh",
    ]
    .iter()
    .map(|name| packaging.join(name))
    .collect();
    for script in &scripts {
        assert!(script.is_file(), "{} exists", script.display());
    }
    // EL runs them with bash as /bin/sh (POSIX mode), Debian and Ubuntu with dash.
    let mut shells = vec![vec!["sh"]];
    if support::require("dash") {
        shells.push(vec!["dash"]);
    }
    if support::require("bash") {
        shells.push(vec!["bash", "--posix"]);
    }
    for shell in shells {
        let (program, options) = shell.split_first().expect("a shell");
        for script in &scripts {
            let mut args = options.to_vec();
            let path = script.to_string_lossy();
            args.extend(["-n", &*path]);
            let shell = shell.join(" ");
            let output = run(program, &args, Duration::from_secs(10)).expect("run sh");
            assert!(
                output.status.success(),
                "{}",
                describe(&format!("{shell} -n {}", script.display()), &output)
            );
        }
    }
    let checkbashisms = find_on_path("checkbashisms")
        .or_else(|| Some(target_dir().join("tools/checkbashisms")).filter(|path| path.is_file()));
    match checkbashisms {
        Some(checkbashisms) => {
            for script in &scripts {
                // -p: POSIX only, not what Debian policy allows beyond it (`local`, `echo -n`).
                let output = run(
                    &checkbashisms.to_string_lossy(),
                    &["-p", &script.to_string_lossy()],
                    Duration::from_secs(30),
                )
                .expect("run checkbashisms");
                assert!(
                    output.status.success(),
                    "{}",
                    describe(&format!("checkbashisms -p {}", script.display()), &output)
                );
            }
        }
        None => eprintln!(
            "checkbashisms is not installed (make package-tools fetches it); ran sh -n and dash -n only"
        ),
    }

    // The init script's headers: LSB for Debian (insserv, update-rc.d) and chkconfig for EL.
    let init = read(&packaging.join("proxymgr.init").to_string_lossy());
    for header in
        ["### BEGIN INIT INFO", "# Provides:          proxymgr", "# Default-Start:", "### END INIT INFO"]
    {
        assert!(init.contains(header), "the init script has {header:?}");
    }
    assert!(
        init.lines().any(|line| line.starts_with("# chkconfig: ")),
        "the init script has a chkconfig line"
    );
    assert!(init.starts_with("#!/bin/sh\n"), "the init script runs under /bin/sh");
}

/// The packaged proxymgr.yml is valid as shipped (and HAProxy accepts its global and defaults lines).
#[test]
fn the_packaged_config_passes_check() {
    if !support::require("haproxy") {
        return;
    }
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/proxymgr.yml");
    let output = support::run_proxymgr(&["--check", "-c", &config.to_string_lossy()]);
    assert!(output.status.success(), "{}", describe("proxymgr --check packaging/proxymgr.yml", &output));
    let yaml = read(&config.to_string_lossy());
    for line in [
        "config_path: /etc/proxymgr/haproxy.cfg",
        "socket_path: /run/proxymgr/haproxy.sock",
        "state_file: /var/lib/proxymgr/state.json",
    ] {
        assert!(yaml.contains(line), "the packaged config keeps HAProxy's files apart: {line}");
    }
}

/// The installed package; dropping it stops proxymgr, purges the package if the test did not, and puts back
/// what the test changed on the machine.
struct Installed {
    purged: bool,
    /// haproxy's rc and systemd links before the install (the package disables the haproxy service).
    haproxy_links: Vec<(PathBuf, PathBuf)>,
    haproxy_was_running: bool,
    /// Paths of the package that existed before the install, moved aside: (original, aside).
    moved_aside: Vec<(PathBuf, PathBuf)>,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        if package_installed() {
            if read(CONFIG).starts_with(MARKER) {
                eprintln!("purging a proxymgr package left by an interrupted run of this test");
                stop_and_purge();
            } else {
                panic!(
                    "a proxymgr package is installed on this machine; this test installs and purges its own and \
                     will not touch that one (dpkg --purge proxymgr first)"
                );
            }
        }
        let haproxy_was_running = Path::new("/etc/init.d/haproxy").exists()
            && run("/etc/init.d/haproxy", &["status"], INIT_TIMEOUT).is_ok_and(|o| o.status.success());
        let mut installed = Installed {
            purged: false,
            haproxy_links: haproxy_links(),
            haproxy_was_running,
            moved_aside: Vec::new(),
        };
        for path in PACKAGE_PATHS {
            let path = Path::new(path);
            if fs::symlink_metadata(path).is_ok() {
                let aside = PathBuf::from(format!("{}.packaging-test-saved", path.display()));
                eprintln!(
                    "{} exists before the install; moving it aside to {} meanwhile",
                    path.display(),
                    aside.display()
                );
                fs::rename(path, &aside).unwrap_or_else(|e| panic!("move {} aside: {e}", path.display()));
                installed.moved_aside.push((path.to_path_buf(), aside));
            }
        }
        dpkg(&["-i", &deb.to_string_lossy()]);
        installed
    }

    /// `dpkg --purge proxymgr`, which must succeed.
    fn purge(&mut self) {
        self.purged = true;
        dpkg(&["--purge", "proxymgr"]);
    }

    /// Puts haproxy's links back as they were: removes the ones that appeared, recreates the ones that went.
    fn restore_haproxy(&self) {
        let now = haproxy_links();
        for (link, target) in &now {
            if !self.haproxy_links.contains(&(link.clone(), target.clone())) {
                let _ = fs::remove_file(link);
            }
        }
        for (link, target) in &self.haproxy_links {
            if !now.contains(&(link.clone(), target.clone())) {
                let _ = fs::remove_file(link);
                if let Err(e) = std::os::unix::fs::symlink(target, link) {
                    eprintln!("cannot restore {} -> {}: {e}", link.display(), target.display());
                }
            }
        }
        if self.haproxy_was_running {
            let _ = run("/etc/init.d/haproxy", &["start"], INIT_TIMEOUT);
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = read(LOG);
            eprintln!("--- {LOG} ---\n{}", &log[log.len().saturating_sub(8000)..]);
        }
        if !self.purged && package_installed() {
            stop_and_purge();
        }
        kill_packaged_processes();
        self.restore_haproxy();
        for (path, aside) in &self.moved_aside {
            if fs::symlink_metadata(path).is_ok() {
                eprintln!(
                    "{} exists after the purge; keeping the saved copy at {}",
                    path.display(),
                    aside.display()
                );
            } else if let Err(e) = fs::rename(aside, path) {
                eprintln!("cannot move {} back to {}: {e}", aside.display(), path.display());
            }
        }
    }
}

/// Stops proxymgr through its init script and purges the package, reporting (never panicking) on failure: it
/// runs from `Drop`.
fn stop_and_purge() {
    if Path::new(INIT).exists() {
        match run(INIT, &["stop"], INIT_TIMEOUT) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!("{}", describe("init script stop", &output)),
            Err(e) => eprintln!("init script stop: {e}"),
        }
    }
    kill_packaged_processes();
    match run("dpkg", &["--purge", "proxymgr"], PACKAGE_TIMEOUT) {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!("{}", describe("dpkg --purge proxymgr", &output)),
        Err(e) => eprintln!("dpkg --purge proxymgr: {e}"),
    }
}

/// SIGKILL for whatever of the package still runs, then a bounded wait until it is gone.
fn kill_packaged_processes() {
    let pids = packaged_processes();
    if pids.is_empty() {
        return;
    }
    eprintln!("killing processes of the package left running: {pids:?}");
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| pid_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The live processes of the packaged proxymgr: /usr/bin/proxymgr itself (even once the package replaced or
/// removed the file) and the HAProxy processes running a config in /etc/proxymgr. Other tests' proxymgr and
/// HAProxy run from target/ and temporary directories, so they are not counted.
fn packaged_processes() -> Vec<u32> {
    let mut pids: Vec<u32> = all_processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            exe(p.pid).starts_with(BINARY)
                || (p.comm == "haproxy" && cmdline(p.pid).iter().any(|arg| arg.starts_with("/etc/proxymgr/")))
        })
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// The packaged HAProxy processes.
fn packaged_haproxy() -> Vec<u32> {
    packaged_processes()
        .into_iter()
        .filter(|&pid| read(&format!("/proc/{pid}/comm")).trim() == "haproxy")
        .collect()
}

/// Runs `action` (a restart, an upgrade) while clients loop through `port`, each request on a new connection,
/// and checks that it was a hand-over that failed no request: a new proxymgr (the pid `action` returns) runs,
/// its HAProxy has replaced the one before, the port's listening socket is the very one it was, and the
/// keeper that held it meanwhile is gone. Returns the new proxymgr's pid.
fn hand_over_under_load(
    port: u16,
    backend: &Backend,
    what: &str,
    pid: u32,
    action: impl FnOnce() -> u32,
) -> u32 {
    let sockets = listening_inodes(port);
    assert_eq!(sockets.len(), 1, "one listening socket on {port} before, {what}: {sockets:?}");
    let haproxy_before = packaged_haproxy();
    assert!(!haproxy_before.is_empty(), "HAProxy serves before, {what}");
    let load = Load::start(port, 4, false);
    wait_hits(backend, 100, "the load loop to get going");
    let new_pid = action();
    assert_ne!(new_pid, pid, "a new proxymgr, {what}");
    assert!(pid_alive(new_pid) && catches_sighup(new_pid), "the new proxymgr runs, {what}");
    wait_until(SETTLE, &format!("one HAProxy, the new proxymgr's, {what}"), || {
        let now = packaged_haproxy();
        now.len() == 1 && !haproxy_before.contains(&now[0])
    });
    wait_hits(backend, 100, "requests through the new HAProxy");
    let report = load.finish();
    eprintln!("{what}: {} requests ok, {} failed {:?}", report.ok, report.failed, report.errors);
    assert!(report.ok > 100, "the load loop barely ran {what}: {report:?}");
    assert_eq!(report.failed, 0, "failed requests {what}: {:?}", report.errors);
    assert_eq!(listening_inodes(port), sockets, "the new HAProxy accepts from the same socket, {what}");
    wait_until(SETTLE, &format!("the keeper to exit once it handed over, {what}"), || {
        // The package's keeper: its hand-over socket is beside the packaged state file.
        !all_processes().iter().any(|p| {
            p.comm == "proxymgr-keeper" && cmdline(p.pid).iter().any(|a| a.starts_with("/var/lib/proxymgr/"))
        })
    });
    new_pid
}

fn wait_hits(backend: &Backend, n: usize, what: &str) {
    let start = backend.hits();
    wait_until(SETTLE, what, || backend.hits() >= start + n);
}

/// `dpkg -i deb` with maintainer scripts allowed to start and restart services, as on a real host: in a
/// private mount namespace, an allowing policy-rc.d is bind-mounted over the machine's (if it has one).
fn upgrade(deb: &Path) {
    const POLICY: &str = "/usr/sbin/policy-rc.d";
    let deb = deb.to_string_lossy();
    if !Path::new(POLICY).exists() {
        dpkg(&["-i", &deb]);
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let allow = dir.path().join("policy-rc.d");
    write(
        &allow.to_string_lossy(),
        "#!/bin/sh\n# The test's: maintainer scripts may start services.\nexit 0\n",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&allow, fs::Permissions::from_mode(0o755)).expect("chmod policy-rc.d");
    }
    let script = r#"mount --bind "$1" /usr/sbin/policy-rc.d && exec dpkg -i "$2""#;
    let args = ["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"];
    let mut args: Vec<&str> = args.to_vec();
    let allow = allow.to_string_lossy();
    args.extend([&*allow, &*deb]);
    let output = run("unshare", &args, PACKAGE_TIMEOUT).expect("run dpkg -i in a mount namespace");
    assert!(output.status.success(), "{}", describe("dpkg -i (upgrade, services allowed)", &output));
}

fn installed_version() -> String {
    let output =
        run("dpkg-query", &["-W", "-f", "${Version}", "proxymgr"], PACKAGE_TIMEOUT).expect("dpkg-query");
    text(&output).trim().to_string()
}

/// The target of `/proc/<pid>/exe` (`/usr/bin/proxymgr (deleted)` once dpkg replaced the file), or "".
fn exe(pid: u32) -> String {
    fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether `pid` catches SIGHUP: bit 0 of SigCgt in /proc/<pid>/status.
fn catches_sighup(pid: u32) -> bool {
    let status = read(&format!("/proc/{pid}/status"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

fn pidfile_pid() -> Option<u32> {
    read(PIDFILE).trim().parse().ok()
}

/// Waits until requests through `port` are answered by the backend `name`.
fn wait_serves(port: u16, name: &str) {
    wait_until(SETTLE, &format!("port {port} to serve {name:?} through the packaged proxymgr"), || {
        http_get(port).is_ok_and(|body| body == name)
    });
}

/// The test's proxymgr.yml: the package's paths, loopback only, services from the test's ZooKeeper.
fn config_yaml(zk: &str, maxconn: u32) -> String {
    format!(
        r#"{MARKER}
haproxy:
  path: /usr/sbin/haproxy
  config_path: {HAPROXY_CFG}
  socket_path: /run/proxymgr/haproxy.sock
  bind_address: 127.0.0.1
  stop_timeout: 5
  global:
    - user haproxy
    - group haproxy
    - maxconn {maxconn}
  defaults:
    - mode http
    - timeout connect 2s
    - timeout client 10s
    - timeout server 10s
state_file: /var/lib/proxymgr/state.json
service_config:
  type: zookeeper
  servers: {zk}
  path: /service_config
"#
    )
}

/// Sets ENABLED in the installed defaults file.
fn set_enabled(enabled: bool) {
    let value = if enabled { "ENABLED=1" } else { "ENABLED=0" };
    let text: Vec<String> = read(DEFAULTS)
        .lines()
        .map(|line| if line.starts_with("ENABLED=") { value.to_string() } else { line.to_string() })
        .collect();
    write(DEFAULTS, &(text.join("\n") + "\n"));
}

/// Runs the installed init script with `action`. Under systemd the script hands over to systemctl;
/// PROXYMGR_INIT_NO_SYSTEMD keeps this test on the script itself.
fn init(action: &str) -> Output {
    run(INIT, &[action], INIT_TIMEOUT).unwrap_or_else(|e| panic!("{INIT} {action}: {e}"))
}

fn init_status() -> i32 {
    let output = init("status");
    output.status.code().unwrap_or_else(|| panic!("{}", describe("status", &output)))
}

/// `dpkg args`, which must succeed.
fn dpkg(args: &[&str]) {
    let output =
        run("dpkg", args, PACKAGE_TIMEOUT).unwrap_or_else(|e| panic!("dpkg {}: {e}", args.join(" ")));
    assert!(output.status.success(), "{}", describe(&format!("dpkg {}", args.join(" ")), &output));
}

fn package_installed() -> bool {
    run("dpkg-query", &["-W", "-f", "${db:Status-Status}", "proxymgr"], PACKAGE_TIMEOUT)
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() != "not-installed")
}

/// The rc links of `service` in /etc/rc?.d.
fn rc_links(service: &str) -> Vec<PathBuf> {
    let mut links = Vec::new();
    for level in ["0", "1", "2", "3", "4", "5", "6", "S"] {
        let Ok(entries) = fs::read_dir(format!("/etc/rc{level}.d")) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_link = (name.starts_with('S') || name.starts_with('K'))
                && name.len() == service.len() + 3
                && name[1..3].bytes().all(|b| b.is_ascii_digit())
                && name[3..] == *service;
            if is_link {
                links.push(entry.path());
            }
        }
    }
    links.sort();
    links
}

/// haproxy's rc links and its systemd unit links under /etc/systemd/system, with their targets.
fn haproxy_links() -> Vec<(PathBuf, PathBuf)> {
    let mut links: Vec<PathBuf> = rc_links("haproxy");
    if let Ok(entries) = fs::read_dir("/etc/systemd/system") {
        for entry in entries.flatten() {
            let candidate = entry.path().join("haproxy.service");
            if entry.path().is_dir() && fs::symlink_metadata(&candidate).is_ok() {
                links.push(candidate);
            }
        }
    }
    let mut with_targets: Vec<(PathBuf, PathBuf)> =
        links.into_iter().filter_map(|link| Some((link.clone(), fs::read_link(&link).ok()?))).collect();
    with_targets.sort();
    with_targets
}

/// The newest `*.ext` in `target/<dir>`. None (the test skips) unless running as root with one built; as root
/// under PROXYMGR_TEST_REQUIRE=1 (make test, CI), a missing package fails the test. The rpm test needs root
/// only for its scratch install, so it also runs unprivileged when an rpm is there.
fn built_package(make_target: &str, dir: &str, ext: &str) -> Option<PathBuf> {
    let needs_root = ext == "deb";
    if needs_root && !is_root() {
        eprintln!("skipping: installing the {ext} takes root (make test runs it as root in CI)");
        return None;
    }
    let dir = target_dir().join(dir);
    let newest = fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == ext))
            .max_by_key(|path| fs::metadata(path).and_then(|m| m.modified()).ok())
    });
    if newest.is_none() {
        if is_root() && std::env::var("PROXYMGR_TEST_REQUIRE").as_deref() == Ok("1") {
            panic!(
                "no .{ext} in {}, but PROXYMGR_TEST_REQUIRE=1 as root requires it: run `make {make_target}`",
                dir.display()
            );
        }
        eprintln!("skipping: no .{ext} in {} (run `make {make_target}`)", dir.display());
    }
    newest
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Whether this process runs as root (effective uid 0, from /proc/self/status).
fn is_root() -> bool {
    read("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Runs `program args` with stdin from /dev/null and its output collected, for at most `timeout` (then it is
/// killed and this fails). DEBIAN_FRONTEND=noninteractive for dpkg; PROXYMGR_INIT_NO_SYSTEMD for the init
/// script. Never panics, so `Drop` can use it.
fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, String> {
    let what = format!("`{program} {}`", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PROXYMGR_INIT_NO_SYSTEMD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let (sender, receiver) = mpsc::channel();
    for (index, pipe) in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            let _ = sender.send((index, buf));
        });
    }
    let status = support::wait_or_kill(&mut child, timeout).map_err(|e| format!("{what}: {e}"))?;
    // A daemon the command started must not hold its output open: the init script redirects proxymgr's.
    let mut output = Output { status, stdout: Vec::new(), stderr: Vec::new() };
    for _ in 0..2 {
        match receiver.recv_timeout(Duration::from_secs(10)) {
            Ok((0, buf)) => output.stdout = buf,
            Ok((_, buf)) => output.stderr = buf,
            Err(_) => return Err(format!("{what} exited, but something it started keeps its output open")),
        }
    }
    Ok(output)
}

/// A command's outcome, for assertion messages.
fn describe(what: &str, output: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// stdout and stderr together.
fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn read(path: &str) -> String {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

fn write(path: &str, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}
