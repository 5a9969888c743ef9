//! Server configuration: a TOML file, with the common settings also on the
//! command line.
//!
//! `host/sluice.example.toml` lists every key with its default (a test below
//! parses it against these types, so it cannot drift); the fields here say
//! what each one means.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod access_log;
mod http3;
mod limits;
mod sandbox;
mod settings;
mod size;
mod vhost;

pub use access_log::{AccessLogFormat, AccessLogTarget};
pub use http3::Http3Config;
pub use limits::{CacheConfig, LimitsConfig, TransferConfig};
pub use sandbox::{wall_ceiling, SandboxConfig, SandboxLimits};
pub use settings::{file_setting, policy_settings, read_settings, PolicySetting, SettingFileError};
#[cfg(test)]
use size::parse_size;
pub use size::ByteSize;
pub use vhost::VhostConfig;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A PEM certificate chain and its private key, as files (read again on
/// every reload; see `tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener (`GET /stats`, `GET /metrics`, `POST /reload`); off
    /// when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// Root of the default host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Policy of the default host; the built-in default policy when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
    /// Runtime worker threads (0 = one per core).
    #[serde(default)]
    pub workers: usize,
    /// Scheduler ticks (task polls) between a busy worker's looks at the
    /// socket events waiting in the kernel (tokio's `event_interval`).
    #[serde(default = "default_event_interval")]
    pub event_interval: u32,
    /// Task polls between a worker's looks at the runtime's shared queue,
    /// where tasks its own queue had no room for wait (tokio's
    /// `global_queue_interval`); 0 = tokio's own, tuned as it runs.
    #[serde(default)]
    pub global_queue_interval: u32,
    /// Most socket events a worker takes from the kernel in one look when
    /// it has nothing else to run (tokio's `max_io_events_per_tick`).
    #[serde(default = "default_io_events")]
    pub io_events: usize,
    /// Most socket events a worker takes from the kernel in one look while
    /// it still has tasks to run (tokio's `max_io_events_per_busy_tick`);
    /// 0 = `io-events`.
    #[serde(default = "default_busy_io_events")]
    pub busy_io_events: usize,
    /// PEM certificate chain for the TLS listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Address of the TLS listener (default 127.0.0.1:8443 when a certificate
    /// is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// A new connection must finish its TLS handshake and start its first
    /// request within this time, or it is closed (a client that connects and
    /// stalls holds a descriptor and buffers until then).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// On SIGTERM or SIGINT, how long responses in flight may take to finish
    /// before the remaining connections are closed, milliseconds (below the
    /// 30 s a container runtime usually waits before killing).
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// A request's header must arrive whole within this time of its first
    /// byte, milliseconds (nginx's `client_header_timeout`, 60 s), or the
    /// connection is closed: a slowloris client trickling a header cannot
    /// hold a connection longer. (The first request is also bounded by
    /// `handshake-timeout-ms`.)
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Between requests, a keep-alive connection is closed if the next
    /// request does not start within this time, milliseconds (nginx's
    /// `keepalive_timeout`, 75 s).
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// A connection whose client reads nothing of what we send for this long
    /// is closed, milliseconds (nginx's `send_timeout`, 60 s): the time
    /// between two writes that make progress, on every path (sendfile,
    /// copying, TLS, HTTP/2).
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// An HTTP/1 keep-alive connection on plain TCP idle this long is
    /// *parked*: hyper's buffers (~17 KiB) are released until the client's
    /// next bytes, milliseconds (2 s; parked between this and a quarter
    /// more); 0 never parks. A connection that is not parked costs nothing
    /// for it; a request on a parked one ~13 µs more server CPU (BENCHMARKS,
    /// "Parking: the cause and the default").
    #[serde(default = "default_park_idle_ms")]
    pub park_idle_ms: u64,
    /// Client connections open at once, plain, TLS and QUIC together. At the cap
    /// the server stops accepting until one closes (new clients wait in the
    /// kernel's listen queue), like nginx's `worker_connections`. Lowered at
    /// start-up, with a warning, if the descriptor limit cannot hold it.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Where the access log goes: `off`, `stderr`, `stdout` or a file path
    /// (appended to).
    #[serde(default)]
    pub access_log: AccessLogTarget,
    /// `combined` (nginx's, with sluice's fields appended) or `json`.
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    #[serde(default)]
    pub transfer: TransferConfig,
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub http3: Http3Config,
    /// Where compiled policies are kept between starts, so a restart loads
    /// them instead of compiling again: `"auto"` (`$XDG_CACHE_HOME/sluice`,
    /// else `$HOME/.cache/sluice`, else none), `"off"`, or a directory.
    #[serde(default = "default_compile_cache")]
    pub compile_cache: String,
    /// Settings for the default host's policy.
    #[serde(default)]
    pub policy: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub vhost: Vec<VhostConfig>,
    /// The directory of the configuration file (set by [`Config::load`]):
    /// where relative `{ file = "PATH" }` settings are read from.
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

fn default_event_interval() -> u32 {
    61
}

fn default_io_events() -> usize {
    1024
}

/// Measured (BENCHMARKS.md, "The c512 tail"): tokio's own (1,024) puts a
/// quarter of 512 ready connections at the back of the shared queue on every
/// busy look; 16 halves the c512 p99 at the same rate.
fn default_busy_io_events() -> usize {
    16
}

fn default_compile_cache() -> String {
    "auto".to_owned()
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

fn default_shutdown_timeout_ms() -> u64 {
    25_000
}

fn default_header_timeout_ms() -> u64 {
    60_000
}

fn default_keepalive_timeout_ms() -> u64 {
    75_000
}

fn default_send_timeout_ms() -> u64 {
    60_000
}

fn default_park_idle_ms() -> u64 {
    2000
}

fn default_max_connections() -> usize {
    10_000
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("valid literal")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            admin: None,
            root: None,
            policy_file: None,
            workers: 0,
            event_interval: default_event_interval(),
            global_queue_interval: 0,
            io_events: default_io_events(),
            busy_io_events: default_busy_io_events(),
            tls_cert: None,
            tls_key: None,
            tls_listen: None,
            handshake_timeout_ms: default_handshake_timeout_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            header_timeout_ms: default_header_timeout_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            park_idle_ms: default_park_idle_ms(),
            send_timeout_ms: default_send_timeout_ms(),
            max_connections: default_max_connections(),
            access_log: AccessLogTarget::default(),
            access_log_format: AccessLogFormat::default(),
            transfer: TransferConfig::default(),
            sandbox: SandboxConfig::default(),
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            http3: Http3Config::default(),
            compile_cache: default_compile_cache(),
            policy: BTreeMap::new(),
            vhost: Vec::new(),
            dir: None,
        }
    }
}

impl Config {
    /// Runtime worker threads: as configured, or one per core.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Calls of one site's policy allowed at once, for a site's own setting
    /// (`None`: the `[sandbox]` one).
    pub fn policy_workers(&self, site: Option<usize>) -> usize {
        match site.unwrap_or(self.sandbox.policy_workers) {
            0 => (self.worker_threads() / 2).max(1),
            n => n,
        }
    }

    /// The compiled-policy cache directory (`compile-cache`), and whether it
    /// was named explicitly (`false` for `"auto"`); `None` when off.
    pub fn compile_cache_dir(&self) -> Option<(PathBuf, bool)> {
        match self.compile_cache.as_str() {
            "off" => None,
            "auto" => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| PathBuf::from(h).join(".cache"))
                            .filter(|p| p.is_absolute())
                    })?;
                Some((base.join("sluice"), false))
            }
            dir => Some((PathBuf::from(dir), true)),
        }
    }

    /// The TLS listener's address and default certificate, if HTTPS is on.
    pub fn tls(&self) -> Option<(SocketAddr, CertFiles)> {
        let files = CertFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        };
        let addr = self
            .tls_listen
            .unwrap_or_else(|| "127.0.0.1:8443".parse().expect("valid literal"));
        Some((addr, files))
    }

    /// The virtual hosts' own certificates, by host name.
    pub fn vhost_certs(&self) -> impl Iterator<Item = (String, CertFiles)> + '_ {
        self.vhost.iter().filter_map(|v| {
            let files = CertFiles {
                cert: v.tls_cert.clone()?,
                key: v.tls_key.clone()?,
            };
            Some((v.host.clone(), files))
        })
    }

    /// Reads a TOML configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.dir = Some(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        });
        // A refused value names the file it came from.
        config.check_values().map_err(|e| match e {
            ConfigError::Invalid(m) => ConfigError::Invalid(format!("{}: {m}", path.display())),
            e => e,
        })?;
        Ok(config)
    }

    /// The connection timeouts.
    pub fn timeouts(&self) -> crate::timeouts::Timeouts {
        crate::timeouts::Timeouts {
            first_request: Duration::from_millis(self.handshake_timeout_ms),
            header: Duration::from_millis(self.header_timeout_ms),
            keepalive: Duration::from_millis(self.keepalive_timeout_ms),
            send: Duration::from_millis(self.send_timeout_ms),
            park: Duration::from_millis(self.park_idle_ms),
        }
    }

    /// Cross-field checks serde cannot express; call it once the command
    /// line is merged in (the TLS keys depend on `--tls-cert`/`--tls-key`).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_tls()?;
        self.check_values()
    }

    /// Certificates come with their keys, and a virtual host's certificate
    /// needs the TLS listener (whose own certificate is the default).
    fn check_tls(&self) -> Result<(), ConfigError> {
        for v in &self.vhost {
            match (&v.tls_cert, &v.tls_key) {
                (Some(_), None) => {
                    return Err(ConfigError::Invalid(format!(
                        "vhost {}: tls-cert is given without tls-key",
                        v.host
                    )))
                }
                (None, Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "vhost {}: tls-key is given without tls-cert",
                        v.host
                    )))
                }
                (Some(_), Some(_)) if self.tls_cert.is_none() => {
                    return Err(ConfigError::Invalid(format!(
                        "vhost {}: tls-cert needs a TLS listener: give tls-cert and tls-key at \
                         the top level (or --tls-cert and --tls-key), the certificate for names \
                         no vhost certificate matches",
                        v.host
                    )))
                }
                _ => {}
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "tls-cert is given without tls-key".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "tls-key is given without tls-cert".into(),
                ))
            }
            (None, None) if self.tls_listen.is_some() => {
                return Err(ConfigError::Invalid(
                    "tls-listen needs tls-cert and tls-key".into(),
                ))
            }
            (None, None) if self.http3.enabled => {
                return Err(ConfigError::Invalid(
                    "http3: enabled needs tls-cert and tls-key (HTTP/3 is served on the TLS \
                     listener's address, with its certificates)"
                        .into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks of values that need nothing from the command line.
    fn check_values(&self) -> Result<(), ConfigError> {
        for (key, ms) in [
            ("handshake-timeout-ms", self.handshake_timeout_ms),
            ("header-timeout-ms", self.header_timeout_ms),
            ("keepalive-timeout-ms", self.keepalive_timeout_ms),
            ("send-timeout-ms", self.send_timeout_ms),
        ] {
            if ms == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be positive")));
            }
        }
        if self.event_interval == 0 {
            return Err(ConfigError::Invalid(
                "event-interval must be positive".into(),
            ));
        }
        if self.io_events == 0 || self.io_events > 65536 {
            return Err(ConfigError::Invalid(
                "io-events must be between 1 and 65536".into(),
            ));
        }
        if self.busy_io_events > self.io_events {
            return Err(ConfigError::Invalid(
                "busy-io-events must be at most io-events (0 = io-events)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max-connections must be positive".into(),
            ));
        }
        let h3 = &self.http3;
        if h3.max_connections == 0 || h3.idle_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "http3: max-connections and idle-timeout-ms must be positive".into(),
            ));
        }
        if !(1..=1024).contains(&h3.max_streams) {
            return Err(ConfigError::Invalid(
                "http3: max-streams must be between 1 and 1024".into(),
            ));
        }
        if h3.send_window.0 < (64 << 10) {
            return Err(ConfigError::Invalid(
                "http3: send-window must be at least 64k".into(),
            ));
        }
        let t = &self.transfer;
        if t.chunk_min.0 == 0 || t.chunk_min.0 > t.chunk_max.0 || t.chunk_max.0 > (1 << 30) {
            return Err(ConfigError::Invalid(
                "transfer: need 0 < chunk-min <= chunk-max <= 1g".into(),
            ));
        }
        if t.sendfile_max_chunk.0 < 4096 {
            return Err(ConfigError::Invalid(
                "transfer: sendfile-max-chunk must be at least 4k".into(),
            ));
        }
        let s = &self.sandbox;
        if s.deadline_ms == 0 || s.tick_ms == 0 || s.instances == 0 {
            return Err(ConfigError::Invalid(
                "sandbox: deadline-ms, tick-ms and instances must be positive".into(),
            ));
        }
        check_memory("sandbox: memory", s.memory)?;
        for v in &self.vhost {
            if let Some(m) = v.memory {
                check_memory(&format!("vhost {}: memory", v.host), m)?;
            }
            if v.deadline_ms == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "vhost {}: deadline-ms must be positive",
                    v.host
                )));
            }
        }
        // A table is a setting read from a file, and nothing else.
        let tables = std::iter::once(("policy".to_owned(), &self.policy)).chain(
            self.vhost
                .iter()
                .map(|v| (format!("vhost {}: policy", v.host), &v.policy)),
        );
        for (table, settings) in tables {
            for (name, value) in settings {
                if value.is_table() && file_setting(value).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "{table}: setting `{name}`: a table must be {{ file = \"PATH\" }}"
                    )));
                }
            }
        }
        if s.stack.0 < (64 << 10) || s.stack.0 > (1 << 30) {
            return Err(ConfigError::Invalid(
                "sandbox: stack must be between 64k and 1g".into(),
            ));
        }
        Ok(())
    }
}

fn check_memory(key: &str, m: ByteSize) -> Result<(), ConfigError> {
    if m.0 < (1 << 20) || m.0 > (4 << 30) {
        return Err(ConfigError::Invalid(format!(
            "{key} must be between 1m and 4g"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::wit;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size(" 12 "), Ok(12));
        assert_eq!(parse_size("16kb"), Ok(16 << 10));
        for bad in ["lots", "+1k", "1 k", "", "k", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    /// Every key of the configuration, as a dotted path (`sandbox.memory`).
    fn keys(value: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // The policy tables are the policy's, not the host's keys.
                if !path.ends_with("policy") || matches!(v, toml::Value::String(_)) {
                    keys(v, &path, out);
                }
                out.insert(path);
            }
        } else if let toml::Value::Array(items) = value {
            for item in items {
                keys(item, prefix, out);
            }
        }
    }

    /// `host/sluice.example.toml` holds every key with its default value (or,
    /// for keys without one, an example): parsed here, so it cannot drift.
    #[test]
    fn the_example_configuration_is_complete_and_holds_the_defaults() {
        let text = include_str!("../sluice.example.toml");
        let example: Config = toml::from_str(text).unwrap();
        example.check().unwrap();
        // The keys without a default are given; every other value is the
        // default.
        let mut defaults = Config {
            admin: example.admin,
            root: example.root.clone(),
            policy_file: example.policy_file.clone(),
            tls_cert: example.tls_cert.clone(),
            tls_key: example.tls_key.clone(),
            tls_listen: example.tls_listen,
            policy: example.policy.clone(),
            vhost: example.vhost.clone(),
            ..Config::default()
        };
        defaults.vhost.truncate(1);
        let as_value = |c: &Config| toml::Value::try_from(c).unwrap();
        assert_eq!(as_value(&example), as_value(&defaults));
        // And every key the host reads is in it: the defaults' keys, and a
        // virtual host with every key set.
        let mut all = Config {
            admin: Some("127.0.0.1:9090".parse().unwrap()),
            root: Some("/srv".into()),
            policy_file: Some("p.wasm".into()),
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            tls_listen: Some("127.0.0.1:8443".parse().unwrap()),
            ..Config::default()
        };
        all.vhost.push(VhostConfig {
            host: "h".into(),
            root: "/srv/h".into(),
            policy_file: Some("p.wasm".into()),
            deadline_ms: Some(1),
            wall_ms: Some(1),
            warmup_ms: Some(1),
            policy_workers: Some(1),
            memory: Some(ByteSize(1 << 20)),
            tls_cert: Some("h.pem".into()),
            tls_key: Some("h.key".into()),
            policy: BTreeMap::new(),
        });
        let (mut want, mut have) = (Default::default(), Default::default());
        keys(&as_value(&all), "", &mut want);
        keys(&toml::from_str::<toml::Value>(text).unwrap(), "", &mut have);
        let missing: Vec<_> = want.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "keys missing from the example: {missing:?}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = toml::from_str::<Config>("[sandbox]\ndeadline-msec = 5\n").unwrap_err();
        assert!(e.to_string().contains("deadline-msec"), "{e}");
        let e = toml::from_str::<Config>("[transfer]\nchunk-max = \"lots\"\n").unwrap_err();
        assert!(e.to_string().contains("chunk-max"), "{e}");
        let e = toml::from_str::<Config>("workers = \"two\"\n").unwrap_err();
        assert!(e.to_string().contains("workers"), "{e}");
        let e = toml::from_str::<Config>("send-timeout-ms = 0\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("send-timeout-ms"), "{e}");
        let e = toml::from_str::<Config>("max-connections = -1\n").unwrap_err();
        assert!(e.to_string().contains("max-connections"), "{e}");
        let e = toml::from_str::<Config>("[http3]\nenabled = true\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("needs tls-cert and tls-key"), "{e}");
        let e = toml::from_str::<Config>("[http3]\nmax-streams = 0\n")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("http3: max-streams"), "{e}");
    }

    #[test]
    fn the_scheduler_settings_are_read_and_bad_ones_refused() {
        let c: Config = toml::from_str(
            "io-events = 256\nbusy-io-events = 8\nevent-interval = 31\nglobal-queue-interval = 7\n",
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(
            (
                c.io_events,
                c.busy_io_events,
                c.event_interval,
                c.global_queue_interval
            ),
            (256, 8, 31, 7)
        );
        // The runtime is built from them without tokio's builder panicking.
        crate::runtime::build(&c).unwrap();
        // Each value tokio's builder would panic on, or that means nothing,
        // is refused naming its key.
        for (text, key) in [
            ("event-interval = 0\n", "event-interval"),
            ("io-events = 0\n", "io-events"),
            ("io-events = 100000\n", "io-events"),
            ("busy-io-events = 2048\n", "busy-io-events"),
            ("io-events = 64\nbusy-io-events = 65\n", "busy-io-events"),
        ] {
            let e = toml::from_str::<Config>(text).unwrap().check().unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
        for text in [
            "event-interval = -1\n",
            "global-queue-interval = \"often\"\n",
        ] {
            let e = toml::from_str::<Config>(text).unwrap_err();
            let key = text.split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn full_file_parses() {
        let c: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            root = "/srv"
            [transfer]
            chunk-default = "128k"
            [sandbox]
            deadline-ms = 5
            memory = "8m"
            [policy]
            index-names = ["index.html", "index.htm"]
            max-ranges = 4
            [[vhost]]
            host = "a.test"
            root = "/srv/a"
            "#,
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(c.transfer.chunk_default, ByteSize(128 << 10));
        assert_eq!(c.sandbox.limits().deadline, Duration::from_millis(5));
        let s = read_settings(&policy_settings(&c.policy, None)).unwrap();
        assert!(matches!(
            &s[0],
            wit::Setting { name, value: wit::SettingValue::Items(items) }
                if name == "index-names" && items == &["index.html", "index.htm"]
        ));
        assert!(matches!(
            &s[1],
            wit::Setting { name, value: wit::SettingValue::Integer(4) } if name == "max-ranges"
        ));
        // A table is only ever a file setting.
        let bad: Config = toml::from_str(
            "[policy]
redirects = { path = \"x\" }
",
        )
        .unwrap();
        let e = bad.check().unwrap_err().to_string();
        assert!(
            e.contains("`redirects`") && e.contains("file = \"PATH\""),
            "{e}"
        );
        assert_eq!(c.vhost[0].host, "a.test");
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }

    #[test]
    fn vhost_certificates_come_with_keys_and_a_tls_listener() {
        let check = |text: &str| toml::from_str::<Config>(text).unwrap().check();
        let vhost = "[[vhost]]\nhost = \"a.test\"\nroot = \"/srv/a\"\n";
        let e = check(&format!("{vhost}tls-cert = \"a.pem\"\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vhost a.test: tls-cert is given without tls-key"
        );
        let e = check(&format!("{vhost}tls-key = \"a.key\"\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vhost a.test: tls-key is given without tls-cert"
        );
        let both = format!("{vhost}tls-cert = \"a.pem\"\ntls-key = \"a.key\"\n");
        let e = check(&both).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("vhost a.test: tls-cert needs a TLS listener"),
            "{e}"
        );
        let with_listener = format!("tls-cert = \"d.pem\"\ntls-key = \"d.key\"\n{both}");
        check(&with_listener).unwrap();
        let c: Config = toml::from_str(&with_listener).unwrap();
        let certs: Vec<_> = c.vhost_certs().collect();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].0, "a.test");
        assert_eq!(certs[0].1.cert, Path::new("a.pem"));
        // The file alone may leave the listener's certificate to the command
        // line: loading does not require it, `check` (after merging) does.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &both).unwrap();
        let mut loaded = Config::load(file.path()).unwrap();
        assert!(loaded.check().is_err());
        loaded.tls_cert = Some("d.pem".into());
        loaded.tls_key = Some("d.key".into());
        loaded.check().unwrap();
    }
}
