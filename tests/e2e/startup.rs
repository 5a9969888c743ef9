//! Start-up failures a newcomer meets (issue 17, item 9): each names the
//! key and the value it came from, and nothing says "listening" unless
//! every listener is bound.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Runs the command to its exit, within a minute (killed after that: a
/// server that does not stop fails the test rather than hanging it).
fn run_to_exit(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A self-signed certificate and key for 127.0.0.1, written to `dir`.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// `sluice serve` with all three listeners, one of them (`busy_key`) on a
/// port another socket holds: it exits non-zero, its error names the key
/// and the address, and it never announced a listener.
fn a_busy_port_is_named(busy_key: &str) {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("a.txt"), "a").unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr: SocketAddr = busy.local_addr().unwrap();
    let addr = |k: &str| {
        if k == busy_key {
            busy_addr.to_string()
        } else {
            "127.0.0.1:0".to_string()
        }
    };
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("serve")
        .arg(site.path())
        .args(["--listen", &addr("listen")])
        .args(["--admin", &addr("admin")])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--tls-listen", &addr("tls-listen")]);
    let out = run_to_exit(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let named = format!("{busy_key} {busy_addr}: ");
    assert!(
        stderr.contains(&named) && stderr.to_ascii_lowercase().contains("in use"),
        "stderr should name `{named}` and say the address is in use:\n{stderr}"
    );
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains("listening") && !text.contains("admin on"),
            "{what} announces a listener although `{busy_key}` could not be bound:\n{text}"
        );
    }
    drop(busy);
}

#[test]
fn a_busy_listen_port_is_named_and_nothing_says_listening() {
    a_busy_port_is_named("listen");
}

#[test]
fn a_busy_tls_listen_port_is_named_and_nothing_says_listening() {
    a_busy_port_is_named("tls-listen");
}

#[test]
fn a_busy_admin_port_is_named_and_nothing_says_listening() {
    a_busy_port_is_named("admin");
}

/// A configuration file whose value is refused: the error names the file
/// and the key.
#[test]
fn a_refused_config_value_names_the_file_and_the_key() {
    let site = tempfile::tempdir().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[sandbox]\ndeadline-ms = 0\n").unwrap();
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("serve")
        .arg(site.path())
        .args(["--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config.path());
    let out = run_to_exit(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let file = config.path().display().to_string();
    assert!(
        stderr.contains(&file) && stderr.contains("deadline-ms"),
        "stderr should name {file} and deadline-ms:\n{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// The scheduler settings (`busy-io-events` and the rest) reach the runtime
/// the server runs on: it logs what it built with the configured values and
/// serves; a value tokio would panic on is refused at start-up, naming the
/// key, before anything listens.
#[test]
fn the_scheduler_settings_are_used_and_a_bad_one_refused() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("a.txt"), b"hello").unwrap();
    let server = Server::start_with(
        site.path(),
        Options {
            config: Some(
                "io-events = 256\nbusy-io-events = 4\nevent-interval = 13\n\
                 global-queue-interval = 5\n",
            ),
            ..Default::default()
        },
    );
    server.expect_log("event_interval=13 global_queue_interval=5 io_events=256 busy_io_events=4");
    let body = client()
        .get(server.url("/a.txt"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "hello");

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "event-interval = 0\n").unwrap();
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("serve")
        .arg(site.path())
        .args(["--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config.path());
    let out = run_to_exit(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("event-interval"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}
