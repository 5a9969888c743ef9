//! Starting the real server and talking to it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[path = "../../host/build_component.rs"]
mod build_component;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The server binary the tests start: this build's, unless
/// `SLUICE_E2E_BIN` names another (to measure an older build with the same
/// test, for a before/after figure).
pub fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// A running `sluice serve`, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The TLS listener, when started with a certificate.
    pub tls: Option<SocketAddr>,
    /// The QUIC (HTTP/3) listener, when HTTP/3 is on.
    pub h3: Option<SocketAddr>,
    logs: Arc<Mutex<String>>,
}

/// Options for [`Server::start_with`].
#[derive(Default)]
pub struct Options<'a> {
    pub policy: Option<&'a Path>,
    /// TOML written to a config file (the root and listeners are added on the command line).
    pub config: Option<&'a str>,
    pub workers: Option<usize>,
    /// PEM certificate and key: also listen for TLS (on a free port).
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Sockets handed over by socket activation, as descriptors 3, 4, …
    pub activate: &'a [BorrowedFd<'a>],
    /// `LISTEN_FDNAMES` for them.
    pub fd_names: Option<&'a str>,
    /// A command the server is run under (`["nice", "-n", "19"]`), if any.
    pub under: &'a [&'a str],
    /// Start the server with this descriptor limit (`RLIMIT_NOFILE`, soft
    /// and hard), as `prlimit --nofile=N:N` would.
    pub nofile: Option<u64>,
}

/// A command that runs `program` with `fds` handed over as systemd does:
/// as descriptors 3, 4, … with `LISTEN_FDS`, `LISTEN_FDNAMES` and
/// `LISTEN_PID` set to the program's own pid. A shell learns that pid (`$$`)
/// and `exec`s the program, which keeps it; between fork and exec only
/// `dup2` and `fcntl` run, which are safe there.
pub fn activated(program: &Path, fds: &[BorrowedFd<'_>], names: Option<&str>) -> Command {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\""])
        .arg(program)
        .env("LISTEN_FDS", fds.len().to_string());
    match names {
        Some(n) => cmd.env("LISTEN_FDNAMES", n),
        None => cmd.env_remove("LISTEN_FDNAMES"),
    };
    // Fixed-size, so nothing is allocated between fork and exec.
    assert!(fds.len() <= 3, "at most three sockets");
    let mut raw = [-1; 3];
    for (r, f) in raw.iter_mut().zip(fds) {
        *r = f.as_raw_fd();
    }
    let n = fds.len();
    unsafe {
        cmd.pre_exec(move || {
            // Copied above the targets first, so no source is overwritten by
            // an earlier target (the copies close on exec).
            let mut copies = [const { None }; 3];
            for (copy, &fd) in copies.iter_mut().zip(&raw[..n]) {
                *copy = Some(rustix::io::fcntl_dupfd_cloexec(
                    BorrowedFd::borrow_raw(fd),
                    3 + n as i32,
                )?);
            }
            for (i, copy) in copies.iter().flatten().enumerate() {
                // dup2 leaves the new descriptor without close-on-exec.
                let mut to = OwnedFd::from_raw_fd(3 + i as i32);
                let r = rustix::io::dup2(copy, &mut to);
                std::mem::forget(to);
                r?;
            }
            Ok(())
        });
    }
    cmd
}

impl Server {
    pub fn start(root: &Path) -> Server {
        Server::start_with(root, Options::default())
    }

    pub fn start_with(root: &Path, opts: Options<'_>) -> Server {
        let mut cmd = if let [program, args @ ..] = opts.under {
            assert!(opts.activate.is_empty(), "not both");
            let mut cmd = Command::new(program);
            cmd.args(args).arg(sluice_bin());
            cmd
        } else if opts.activate.is_empty() {
            Command::new(sluice_bin())
        } else {
            activated(&sluice_bin(), opts.activate, opts.fd_names)
        };
        cmd.arg("serve")
            .arg(root)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
        if let Some(p) = opts.policy {
            cmd.arg("--policy").arg(p);
        }
        let config_file;
        if let Some(text) = opts.config {
            config_file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(config_file.path(), text).unwrap();
            cmd.arg("--config").arg(config_file.path());
            // The server reads it at start-up, before we return.
            std::mem::forget(config_file);
        }
        if let Some((cert, key)) = opts.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            cmd.args(["--tls-listen", "127.0.0.1:0"]);
        }
        cmd.args(["--workers", &opts.workers.unwrap_or(2).to_string()]);
        if let Some(n) = opts.nofile {
            use std::os::unix::process::CommandExt;
            let limit = rustix::process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            };
            // setrlimit is a plain system call: safe between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
                    Ok(())
                });
            }
        }
        cmd.env("SLUICE_LOG", "sluice=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start sluice");
        let logs = Arc::new(Mutex::new(String::new()));
        {
            let logs = logs.clone();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut addr = None;
        let mut admin = None;
        let mut tls = None;
        let mut h3 = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        // The https and h3 lines, when there are, come before the admin line.
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!("sluice did not start; stderr:\n{}", logs.lock().unwrap());
            };
            if let Some(a) = line.strip_prefix("sluice: listening on http://") {
                addr = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("sluice: listening on https://") {
                tls = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("sluice: listening on h3://") {
                h3 = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("sluice: admin on http://") {
                admin = Some(a.parse().unwrap());
            }
        }
        Server {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            tls,
            h3,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 10 s) for the server to log a line containing
    /// `needle`; fails the test with the whole log if it does not.
    pub fn expect_log(&self, needle: &str) {
        assert!(
            eventually(Duration::from_secs(10), || self.logs().contains(needle)),
            "no log line containing {needle:?}:\n{}",
            self.logs()
        );
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The admin counters.
    pub fn stats(&self) -> HashMap<String, u64> {
        let text = client()
            .get(format!("http://{}/stats", self.admin))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name]
    }

    /// One unlabelled sample of `GET /metrics` (a gauge such as
    /// `sluice_open_connections`).
    pub fn metric(&self, name: &str) -> f64 {
        let text = client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// TCP sockets the server process holds that are not listening: its
    /// client connections (on any port, admin included), however far they
    /// are in being closed. Read from the process's descriptors and its
    /// network namespace's `/proc/net/tcp{,6}` tables, so a test can wait
    /// for exactly "no connection left" instead of a descriptor count.
    pub fn tcp_connections(&self) -> usize {
        let pid = self.pid();
        let mut listening = std::collections::HashSet::new();
        let mut known = std::collections::HashSet::new();
        for table in ["tcp", "tcp6"] {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 {
                    known.insert(f[9].to_string());
                    if f[3] == "0A" {
                        listening.insert(f[9].to_string());
                    }
                }
            }
        }
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .filter(|inode| known.contains(inode) && !listening.contains(inode))
            .count()
    }

    /// Resident memory of the server process, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most memory the server process has ever had resident, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resets the peak RSS (`VmHWM`) to the current RSS (`clear_refs` 5),
    /// so a later `peak_rss_kib` measures from now.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Asks the server to reload its policies (as SIGHUP does).
    pub fn reload(&self) -> (u16, String) {
        let res = client()
            .post(format!("http://{}/reload", self.admin))
            .send()
            .unwrap();
        (res.status().as_u16(), res.text().unwrap())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that does not decompress, follow redirects or use a proxy.
pub fn client() -> reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_ring();
            reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        })
        .clone()
}

/// Makes ring the process's rustls provider. reqwest is built without one
/// (its default, aws-lc-rs, needs cmake) and wants one even for plain HTTP.
pub fn install_ring() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// Sends raw bytes and reads the whole answer (the request should ask for
/// `Connection: close`).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A GET of `target` (sent exactly as given) over raw TCP; returns the response.
pub fn raw_get(addr: SocketAddr, target: &str) -> Vec<u8> {
    raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Builds a workspace package for wasm32-wasip2 (real compiler, real cargo,
/// `host/build.rs`'s recipe) and returns the component's path. Built once
/// per test run.
pub fn build_component(package: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (mut cmd, wasm) = build_component::command(env!("CARGO"), &workspace(), package);
    let status = cmd.status().expect("run cargo");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed"
    );
    wasm
}

/// An example policy built outside cargo by `tests/run` (its build script
/// needs python3 and pip, or Node and npm), whose path is in the variable
/// `var` at run time (or was at build time, `compiled`):
/// `SLUICE_PYTHON_POLICY` (tests/policies/python/build.sh) or
/// `SLUICE_JS_POLICY` (tests/policies/js/build.sh).
pub fn example_policy(var: &str, compiled: Option<&str>, build: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .or_else(|| compiled.map(Into::into))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set: run {build} (it writes the component under target/) and set \
                 {var} to the component's path, or run ./tests/run"
            )
        });
    assert!(
        path.is_file(),
        "{var}={} is not a file: run {build}",
        path.display()
    );
    path
}

/// Polls `cond` every 20 ms for up to `limit`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small multi-threaded runtime for tests that drive async clients (or an
/// in-process server) from a plain `#[test]`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
