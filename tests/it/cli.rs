//! The binary: flags, configuration files, exit codes, and what reaches its log.

use crate::binary;
use crate::binary::{Proc, stream_client};
use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Helpers.

const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy");

/// What a finished run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A started binary whose stdout and stderr go to files in its own temp directory.
struct Started {
    child: Child,
    dir: tempfile::TempDir,
}

fn start(args: &[&str]) -> Started {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    Started { child, dir }
}

impl Started {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits (bounded by [`WAIT`]) for the exit; kills the process and fails if it does not come.
    fn finish(mut self) -> Run {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the binary did not exit within {WAIT:?}; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Run {
            code: status.code(),
            stdout: std::fs::read_to_string(self.dir.path().join("stdout")).unwrap(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary to its exit.
fn exec(args: &[&str]) -> Run {
    start(args).finish()
}

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// A configuration that would run (TLS off, a unix socket in `dir`, ephemeral ports), plus
/// `extra`; for the tests that check the broker refuses before binding anything.
fn runnable_config(dir: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let unix = dir.join("proxy.socket");
    let path = binary::write_config(dir, 0, 0, &unix, "", extra);
    (path, unix)
}

/// Asserts a one-line error on stderr containing every needle, and exit code 2.
fn assert_config_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(2), "stderr: {}", run.stderr);
    let text = run.stderr.trim_end();
    assert_eq!(text.lines().count(), 1, "exactly one line on stderr: {text:?}");
    for needle in needles {
        assert!(text.contains(needle), "stderr should mention {needle:?}: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Flags.

#[test]
fn help_lists_every_flag() {
    let run = exec(&["--help"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    for flag in [
        "-c, --configuration",
        "-m, --mock-authenticator",
        "-l, --logging",
        "--verbose",
        "-v, --version",
        "--check-config",
        "--print-config",
        "-h, --help",
    ] {
        assert!(run.stdout.contains(flag), "--help lists {flag}:\n{}", run.stdout);
    }
}

/// The commented file `--print-config` writes is a configuration that checks, with every key
/// at its default; the one a user edits with an authenticator chosen is accepted too.
#[test]
fn print_config_writes_a_file_that_checks() {
    let run = exec(&["--print-config"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("#maxConnections=65536\n"), "{}", run.stdout);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remoteproxy.conf");
    let edited = run.stdout.replace("#[Authentication]\n", "[Authentication]\ntype=mock\n");
    std::fs::write(&path, edited).unwrap();
    let check = exec(&["-c", path.to_str().unwrap(), "--check-config"]);
    assert_eq!(check.code, Some(0), "stderr: {}", check.stderr);
    assert!(check.stdout.contains("configuration OK"), "{}", check.stdout);
}

#[test]
fn version_flags_print_the_version() {
    for flag in ["-v", "--version"] {
        let run = exec(&[flag]);
        assert_eq!(run.code, Some(0), "{flag}: {}", run.stderr);
        assert_eq!(run.stdout.trim(), format!("remoteproxy {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

#[test]
fn unknown_flag_exits_2() {
    let run = exec(&["--no-such-flag"]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
    let run = exec(&["-c"]);
    assert_eq!(run.code, Some(2), "-c needs a value: {}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// 11. The authenticator must be chosen.

#[test]
fn without_an_authenticator_the_broker_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (config, unix) = runnable_config(dir.path(), "");
    let config = config.to_str().unwrap();
    for args in [vec![], vec!["-c", config], vec!["-c", config, "--check-config"]] {
        let run = exec(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("[Authentication]"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("--mock-authenticator"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("[AWS]"), "names the nymea way too: {args:?}: {}", run.stderr);
    }
    assert!(!unix.exists(), "nothing was bound");
    // An empty type is no authenticator either.
    let (config, _) = runnable_config(dir.path(), "[Authentication]\ntype=\n");
    let run = exec(&["-c", config.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--mock-authenticator"), "{}", run.stderr);
}

#[tokio::test]
async fn authentication_type_mock_starts_the_broker() {
    let mut proc = Proc::launch("", |_| "[Authentication]\ntype=mock\n".to_string(), &[]);
    proc.ready().await;
    let mut client = proc.client(Kind::Tcp).await;
    let hello = client.hello().await;
    assert_eq!(hello["status"], "success", "{hello}");
    assert_eq!(hello["params"]["version"], env!("CARGO_PKG_VERSION"), "{hello}");
    // The mock authenticator accepts a token.
    assert_eq!(client.authenticate("uuid-a", "a", "any-token", None).await, "AuthenticationErrorNoError");
    // The unix listener is up too.
    let mut unix_client = proc.client(Kind::Unix).await;
    assert_eq!(unix_client.hello().await["params"]["server"], "remoteproxy");
    proc.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Configuration files.

const SNAKEOIL_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const SNAKEOIL_KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";

fn reference_config_with(certificate: &str, key: &str) -> String {
    let text = std::fs::read_to_string(fixture("nymea-remoteproxy-1.8.4.conf")).unwrap();
    assert!(text.contains(SNAKEOIL_CERT) && text.contains(SNAKEOIL_KEY));
    text.replace(SNAKEOIL_CERT, certificate).replace(SNAKEOIL_KEY, key)
}

#[test]
fn reference_file_with_test_certificates_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nymea-remoteproxy.conf");
    let cert = fixture("tls/rsa.crt");
    let key = fixture("tls/rsa.key");
    std::fs::write(&path, reference_config_with(cert.to_str().unwrap(), key.to_str().unwrap())).unwrap();
    let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("configuration OK"), "{}", run.stdout);
    assert!(run.stdout.contains(path.to_str().unwrap()), "{}", run.stdout);
}

#[test]
fn reference_file_unchanged() {
    // The file names the Debian snakeoil certificate: fine where it exists and is readable,
    // a one-line `[SSL] certificate` error where it does not.
    let path = fixture("nymea-remoteproxy-1.8.4.conf");
    let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
    let snakeoil_usable = std::fs::read(SNAKEOIL_CERT).is_ok() && std::fs::read(SNAKEOIL_KEY).is_ok();
    if snakeoil_usable {
        assert_eq!(run.code, Some(0), "snakeoil files exist here; stderr: {}", run.stderr);
    } else {
        assert_config_error(&run, &[path.to_str().unwrap(), "[SSL] certificate"]);
    }
}

/// The 1.8.4 file pointing at a certificate that does not exist, made runnable with
/// `[Authentication] type=mock`.
fn reference_file_with_missing_certificate(dir: &Path) -> PathBuf {
    let path = dir.join("nymea-remoteproxy.conf");
    let missing = dir.join("no-such-cert.pem");
    let key = fixture("tls/rsa.key");
    let mut text = reference_config_with(missing.to_str().unwrap(), key.to_str().unwrap());
    text.push_str("\n[Authentication]\ntype=mock\n");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reference_file_with_a_missing_certificate_exits_2_naming_ssl_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = reference_file_with_missing_certificate(dir.path());
    for args in [vec!["-c", path.to_str().unwrap(), "--check-config"], vec!["-c", path.to_str().unwrap()]] {
        let run = exec(&args);
        assert_config_error(&run, &[path.to_str().unwrap(), "[SSL] certificate", "no-such-cert.pem"]);
        assert!(!run.stderr.contains("certificateKey"), "{}", run.stderr);
    }
}

/// With `-m` the same error is still the only line on stderr: a configuration error is one line
/// naming file, section and key, whatever the flags.
#[test]
fn certificate_error_with_mock_flag_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = reference_file_with_missing_certificate(dir.path());
    let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
    assert_config_error(&run, &[path.to_str().unwrap(), "[SSL] certificate"]);
}

#[test]
fn bad_files_exit_2_with_one_line_naming_file_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("unknown-key", "[ProxyServer]\nname=x\nbogusKey=1\n", &["[ProxyServer]", "bogusKey"]),
        ("unknown-section", "[ProxyServer]\nname=x\n[Bogus]\nfoo=1\n", &["[Bogus]"]),
        ("bad-bool", "[SSL]\nenabled=maybe\n", &["[SSL]", "enabled", "maybe"]),
        ("bad-number", "[ProxyServer]\naloneTimeout=soon\n", &["[ProxyServer]", "aloneTimeout", "soon"]),
        ("negative-number", "[ProxyServer]\ninactiveTimeout=-5\n", &["[ProxyServer]", "inactiveTimeout"]),
        ("bad-port", "[TcpServer]\nhost=127.0.0.1\nport=70000\n", &["[TcpServer]", "port"]),
        ("bad-host", "[WebSocketServer]\nhost=example.com\nport=1212\n", &["[WebSocketServer]", "host"]),
        ("bad-auth-type", "[Authentication]\ntype=magic\n", &["[Authentication]", "type"]),
    ];
    for (name, text, needles) in cases {
        let path = dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, text).unwrap();
        let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(needles);
        assert_config_error(&run, &all);
        // The same file fails the same way without --check-config (before binding anything).
        let run = exec(&["-c", path.to_str().unwrap(), "-m"]);
        assert_config_error(&run, &all);
    }
}

#[test]
fn missing_or_unreadable_file_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.conf");
    let run = exec(&["-c", missing.to_str().unwrap(), "-m", "--check-config"]);
    assert_config_error(&run, &[missing.to_str().unwrap()]);
    // A directory cannot be read as a file (unlike permissions, this holds for root too).
    let directory = dir.path().join("a-directory.conf");
    std::fs::create_dir(&directory).unwrap();
    let run = exec(&["-c", directory.to_str().unwrap(), "-m", "--check-config"]);
    assert_config_error(&run, &[directory.to_str().unwrap()]);
    // Not UTF-8.
    let binary = dir.path().join("binary.conf");
    std::fs::write(&binary, b"[ProxyServer]\nname=\xff\xfe\n").unwrap();
    let run = exec(&["-c", binary.to_str().unwrap(), "-m", "--check-config"]);
    assert_config_error(&run, &[binary.to_str().unwrap()]);
}

#[test]
fn check_config_does_not_bind() {
    // A port that is taken does not matter to --check-config: it only reads and validates.
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let path = dir.path().join("taken.conf");
    std::fs::write(&path, format!("[SSL]\nenabled=false\n[TcpServer]\nhost=127.0.0.1\nport={port}\n"))
        .unwrap();
    let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    drop(occupied);
}

// ---------------------------------------------------------------------------------------------
// 13. Tokens never reach the log.

#[tokio::test]
async fn tokens_never_reach_the_log() {
    const TOKEN: &str = "tok-SECRET-1234";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let mut proc = Proc::launch("", |_| String::new(), &["--verbose", "-l", log.to_str().unwrap(), "-m"]);
    proc.ready().await;
    let addr = proc.tcp;

    // A full tunnel with the token.
    let mut a = proc.client(Kind::Tcp).await;
    let mut b = proc.client(Kind::Unix).await;
    assert_eq!(a.authenticate("uuid-a", "a", TOKEN, Some("n1")).await, "AuthenticationErrorNoError");
    assert_eq!(b.authenticate("uuid-b", "b", TOKEN, Some("n1")).await, "AuthenticationErrorNoError");
    b.wait_tunnel().await;
    a.wait_tunnel().await;
    a.send_bytes(b"hello b").await;
    assert_eq!(b.read_exact(7).await, b"hello b");
    b.send_bytes(TOKEN.as_bytes()).await;
    assert_eq!(a.read_exact(TOKEN.len()).await, TOKEN.as_bytes());

    // A third client for the same pair is refused.
    let mut c = TcpStream::connect(addr).await.map(|s| stream_client(Kind::Tcp, Box::new(s))).unwrap();
    assert_eq!(c.authenticate("uuid-c", "c", TOKEN, Some("n1")).await, "AuthenticationErrorProxyError");
    assert_eq!(c.closed().await, Closed::Eof);

    // Failed requests that carry the token in bad params or elsewhere.
    let failing = [
        json!({"id": 2, "method": "Authentication.Authenticate",
               "params": {"uuid": "u", "name": "n", "token": TOKEN, "extra": TOKEN}}),
        json!({"id": 3, "method": "Authentication.Authenticate", "params": {"token": TOKEN}}),
        json!({"id": 4, "method": format!("Authentication.{TOKEN}"), "params": {"token": TOKEN}}),
        json!({"id": 5, "method": TOKEN, "params": {"token": TOKEN}}),
        json!({"method": "Authentication.Authenticate", "params": {"token": TOKEN}}),
    ];
    for request in failing {
        let mut d = stream_client(Kind::Tcp, Box::new(TcpStream::connect(addr).await.unwrap()));
        d.send_json(&request).await;
        let response = d.recv_json().await;
        assert_eq!(response["status"], "error", "{request} -> {response}");
        assert_eq!(d.closed().await, Closed::Eof);
    }
    let mut e = stream_client(Kind::Tcp, Box::new(TcpStream::connect(addr).await.unwrap()));
    e.send_text(&format!("{{\"id\":6,\"params\":{{\"token\":\"{TOKEN}\"}}]\n")).await;
    assert_eq!(e.recv_json().await["status"], "error");
    assert_eq!(e.closed().await, Closed::Eof);

    drop((a, b));
    let stderr = proc.stop().await;
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(!log_text.is_empty(), "the log file is written");
    assert!(log_text.contains("tunnel established"), "the log covers the tunnel:\n{log_text}");
    for (what, text) in [("stderr", &stderr), ("log file", &log_text)] {
        assert!(!text.contains(TOKEN), "the token appears in the {what}:\n{text}");
        assert!(!text.contains("SECRET"), "part of the token appears in the {what}:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// 13. The first run works for everyone.

/// The README's run command (built-in defaults, `-m`) as a user who cannot write
/// `/run/remoteproxy`: the sockets move to a directory of that user's and every port opens.
/// Switching users needs root, which CI has; elsewhere the test says so and does nothing.
#[tokio::test]
async fn built_in_defaults_start_as_a_normal_user() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("not root: cannot switch to a normal user here; skipped");
        return;
    }
    // The user runs a copy in a directory everyone can enter: the checkout itself may sit below
    // a directory only root can (a CI clone under /root, say).
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("remoteproxy");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env"])
        .arg(&bin)
        .arg("-m")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if log.contains("remoteproxy running") {
            break log;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the broker exited with {status} as a normal user: {log}");
        }
        assert!(Instant::now() < deadline, "the broker did not start: {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(log.contains("configuration: built-in defaults"), "{log}");
    let socket = std::env::temp_dir().join("remoteproxy-65534").join("proxy.socket");
    assert!(log.contains(&format!("path={}", socket.display())), "the log says where: {log}");
    for port in [1212, 1213, 2212, 2213] {
        TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("port {port}: {e}"));
    }
    tokio::net::UnixStream::connect(&socket).await.unwrap();
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// `--write-certificate FILE` writes the certificate the broker serves: the one whose fingerprint
/// the start log shows, for clients to give to `--ca`.
#[tokio::test]
async fn write_certificate_writes_the_served_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("broker.pem");
    let (config, _) = runnable_config(dir.path(), "");
    let config = config.to_str().unwrap().to_string();
    let text =
        std::fs::read_to_string(&config).unwrap().replace("[SSL]\nenabled=false", "[SSL]\nenabled=true");
    std::fs::write(&config, text).unwrap();
    let started = start(&["-c", &config, "-m", "--write-certificate", written.to_str().unwrap()]);
    let deadline = Instant::now() + WAIT;
    let logged = loop {
        let log = started.stderr();
        if let Some(at) = log.find("fingerprint=") {
            break log[at + "fingerprint=".len()..].split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no fingerprint logged: {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pem = std::fs::read_to_string(&written).unwrap();
    let der = pem::parse(&pem).unwrap().into_contents();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&der);
    let fingerprint = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    assert_eq!(fingerprint, logged);
    // With TLS off there is nothing to write: one line, exit 2.
    std::fs::create_dir(dir.path().join("plain")).unwrap();
    let (plain, _) = runnable_config(&dir.path().join("plain"), "");
    let run = exec(&["-c", plain.to_str().unwrap(), "-m", "--write-certificate", written.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("TLS is off"), "{}", run.stderr);
}

/// `--check-config` creates nothing: the statistics directories and files named by the file
/// stay absent (a real start creates them).
#[test]
fn check_config_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats");
    let (path, _) = runnable_config(
        dir.path(),
        &format!(
            "[ProxyServer]\nlogEngineEnabled=true\nstatisticsLogFile={0}/log/statistics.log\n\
             statisticsStateFile={0}/state/statistics.json\n",
            stats.display()
        ),
    );
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    let run = exec(&["-c", path.to_str().unwrap(), "-m", "--check-config"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert!(!stats.exists());
}

/// `remoteproxy certs` with the Micronets scripts' flag names: files written and named, a
/// second run refused without touching them, a leaf the broker's rendezvous TLS accepts.
#[test]
fn certs_make_a_root_and_a_leaf_with_the_micronets_flag_names() {
    let dir = tempfile::tempdir().unwrap();
    let base = |name: &str| dir.path().join(name).display().to_string();
    let root = exec(&[
        "certs",
        "root",
        "--cert-basename",
        &base("ws-root"),
        "--subject-org-name",
        "Root",
        "--expiration-in-days",
        "365",
    ]);
    assert_eq!(root.code, Some(0), "{}", root.stderr);
    assert!(
        root.stdout.contains("ws-root.cert.pem") && root.stdout.contains("ws-root.key.pem"),
        "{}",
        root.stdout
    );
    let leaf_args = [
        "certs",
        "leaf",
        "--cert-basename",
        &base("manager"),
        "--subject-org-name",
        "Micronets Manager Cert",
        "--ca-certfile",
        &base("ws-root.cert.pem"),
        "--ca-keyfile",
        &base("ws-root.key.pem"),
    ];
    let leaf = exec(&leaf_args);
    assert_eq!(leaf.code, Some(0), "{}", leaf.stderr);
    for file in ["manager.cert.pem", "manager.key.pem", "manager.pkeycert.pem"] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let before = std::fs::read(dir.path().join("manager.key.pem")).unwrap();
    let again = exec(&leaf_args);
    assert_eq!(again.code, Some(2));
    assert!(again.stderr.contains("manager.cert.pem exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(dir.path().join("manager.key.pem")).unwrap(), before, "nothing overwritten");
    assert!(!again.stderr.contains("PRIVATE KEY"), "no key material in messages");
}
