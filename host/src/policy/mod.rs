//! Loading, limiting and calling policy components.
//!
//! A [`Policy`] is one compiled component with its settings and limits. Calls
//! run on *warm* instances kept in a small pool and reused across requests
//! (measured with `host/benches/policy.rs`; see `host/benches/RESULTS.md`). An
//! instance that traps, overruns its deadline or hits a limit is dropped, never
//! reused: its state is suspect.
//!
//! Calls are synchronous on the async worker: wasm cannot block on I/O here
//! (the WASI context is empty and every WASI import that could wait is
//! replaced, see `wasi`), so a call costs only CPU, and the epoch deadline
//! bounds how long it can hold the worker. A panic in a host function the
//! policy called is caught and treated as a trap.
//!
//! The host speaks `sluice:policy@0.2.0` ([`wit`]); a component built against
//! 0.1.0 is recognised by the package version it imports and adapted
//! (`v0_1`). Any other version is refused by name.

mod bounded;
mod compiled;
mod engine;
mod instance;
mod shared;
mod v0_1;
mod wasi;
pub mod wit;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderName;

pub use compiled::CacheDirError;
use compiled::Compiled;
pub use engine::{pool_for, wasmtime_config, Sandbox, MAX_WASM_STACK};
pub use instance::Exceeded;
use instance::{Configured, Warm};
pub use shared::Loader;

use crate::coding::Coding;
use crate::config::SandboxLimits;
use crate::decision;
use crate::stats;

/// The default policy, built from `guest/` by `host/build.rs`.
pub static DEFAULT_POLICY: &[u8] = include_bytes!(env!("SLUICE_DEFAULT_POLICY"));

/// Why a policy could not be loaded. Each variant names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0:#}")]
    Compile(wasmtime::Error),
    #[error(
        "built against {}; this host supports sluice:policy@{}",
        .found.as_deref().map_or("no sluice:policy package".to_owned(), |v| format!("sluice:policy@{v}")),
        wit::SUPPORTED.join(", @")
    )]
    Version { found: Option<String> },
    #[error("component does not fit sluice:policy@{version}: {source:#}")]
    Link {
        version: &'static str,
        source: wasmtime::Error,
    },
    #[error("cannot instantiate the policy: {0}")]
    Instantiate(CallError),
    #[error("`configure` failed: {0}")]
    Configure(CallError),
    #[error("policy refused its settings: {0}")]
    Refused(String),
    #[error("policy asked for more than the host allows: {0}")]
    Capabilities(#[from] CapabilityError),
    #[error("canary call `decide(GET /)` failed: {0}")]
    Canary(CallError),
    #[error("canary call `decide(GET /)` returned an invalid decision: {0}")]
    CanaryInvalid(decision::DecisionError),
}

/// Why a policy call produced no decision.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("policy used up its {0:?} CPU-time deadline (`deadline-ms`)")]
    Deadline(Duration),
    #[error("policy ran past its {0:?} wall-clock ceiling (`wall-ms`)")]
    WallClock(Duration),
    #[error("policy exceeded a limit: {0}")]
    Exceeded(Exceeded),
    #[error("policy hit a wasm stack overflow (`stack` in [sandbox])")]
    Stack,
    #[error("policy trapped: {0}")]
    Trap(String),
    #[error("could not instantiate the policy: {0}")]
    Instantiate(String),
    #[error("the instance pool is full: {0} (`instances` in [sandbox] raises it)")]
    Pool(String),
    /// The call returned, but its decision is over one of the host's limits
    /// and was not copied out of the guest (see `bounded`). Not a fault: the
    /// instance is intact and stays in use.
    #[error("policy returned a decision over the host's limits: {0}")]
    Invalid(decision::DecisionError),
}

impl CallError {
    /// The fault's kind, an index into `stats::FAULTS`; `None` for an
    /// invalid decision, which is counted as one, not as a fault.
    pub fn kind(&self) -> Option<usize> {
        let name = match self {
            CallError::Invalid(_) => return None,
            CallError::Deadline(_) => "deadline",
            CallError::WallClock(_) => "wall_clock",
            CallError::Exceeded(Exceeded::Memory { .. }) => "memory",
            CallError::Exceeded(Exceeded::Table { .. }) => "table",
            CallError::Stack => "stack",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
            CallError::Pool(_) => "pool",
        };
        Some(
            stats::FAULTS
                .iter()
                .position(|k| *k == name)
                .expect("every kind is listed"),
        )
    }

    /// Whether the client should be told to come back (503: the policy ran
    /// out of a resource) rather than that the server failed (500: the
    /// policy is broken).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, CallError::Trap(_) | CallError::Invalid(_))
    }
}

/// A capability a policy asked for that the host does not grant: each is a
/// bound on the work the host does for that policy on every request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("{0} index names, over the limit of {MAX_INDEX_NAMES}")]
    IndexNameCount(usize),
    #[error("index name {0:?} is not a plain file name of at most {MAX_NAME_LEN} bytes")]
    IndexName(String),
    #[error("{0} request headers, over the limit of {MAX_REQUEST_HEADERS}")]
    RequestHeaderCount(usize),
    #[error("request header {0:?} is not a lower-case field name")]
    RequestHeader(String),
}

/// Most index names a policy may ask the host to try per directory request.
pub const MAX_INDEX_NAMES: usize = 16;
/// Longest index name (a file name: `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Most request header names a policy may declare.
pub const MAX_REQUEST_HEADERS: usize = 32;

/// The host's limits on every decision, as handed to `configure`.
pub fn host_limits() -> wit::HostLimits {
    let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    wit::HostLimits {
        max_ranges: cap(decision::MAX_RANGES),
        max_headers: cap(decision::MAX_HEADERS),
        max_header_bytes: cap(decision::MAX_HEADER_BYTES),
        max_inline: cap(decision::MAX_INLINE),
    }
}

/// How the host may move a policy's file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// Read size for the copying path; 0 for the host default.
    pub chunk_size: u32,
    /// Whether `sendfile(2)` is allowed.
    pub zero_copy: bool,
}

/// Which request fields cross into the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// Every header and the query (0.1.0 policies, which declare nothing).
    All,
    /// Only these header fields, and the query if `query`.
    Declared {
        headers: Vec<HeaderName>,
        query: bool,
    },
}

impl Fields {
    /// Whether header `name` is passed to the policy.
    pub fn wants(&self, name: &HeaderName) -> bool {
        match self {
            Fields::All => true,
            Fields::Declared { headers, .. } => headers.contains(name),
        }
    }

    /// Whether the query is passed to the policy.
    pub fn query(&self) -> bool {
        match self {
            Fields::All => true,
            Fields::Declared { query, .. } => *query,
        }
    }
}

/// What the policy asked of the host, checked against the host's limits.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub index_names: Vec<String>,
    /// Codings of precompressed siblings to look for, without duplicates.
    pub siblings: Vec<Coding>,
    pub fields: Fields,
    /// Decisions are a pure function of the inputs and may be reused.
    pub reusable: bool,
    pub transport: Transport,
}

impl Capabilities {
    fn check(configured: Configured) -> Result<Capabilities, CapabilityError> {
        let (index_names, siblings, fields, reusable, transport) = match configured {
            Configured::V0_2(c) => {
                if c.request_headers.len() > MAX_REQUEST_HEADERS {
                    return Err(CapabilityError::RequestHeaderCount(c.request_headers.len()));
                }
                let headers = c
                    .request_headers
                    .into_iter()
                    .map(|n| {
                        // `HeaderName` lower-cases; a declared upper-case name
                        // would silently never match what the policy compares.
                        match HeaderName::from_bytes(n.as_bytes()) {
                            Ok(h) if h.as_str() == n => Ok(h),
                            _ => Err(CapabilityError::RequestHeader(n)),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let fields = Fields::Declared {
                    headers,
                    query: c.query,
                };
                let transport = Transport {
                    chunk_size: c.chunk_size,
                    zero_copy: c.zero_copy,
                };
                (c.index_names, c.siblings, fields, c.reusable, transport)
            }
            Configured::V0_1 {
                index_names,
                siblings,
            } => {
                // 0.1.0 carried the transport in every decision.
                let transport = Transport {
                    chunk_size: 0,
                    zero_copy: true,
                };
                (index_names, siblings, Fields::All, false, transport)
            }
        };
        if index_names.len() > MAX_INDEX_NAMES {
            return Err(CapabilityError::IndexNameCount(index_names.len()));
        }
        if let Some(bad) = index_names.iter().find(|n| !plain_file_name(n)) {
            return Err(CapabilityError::IndexName(bad.clone()));
        }
        let mut unique: Vec<Coding> = Vec::with_capacity(siblings.len());
        for c in siblings {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        Ok(Capabilities {
            index_names,
            siblings: unique,
            fields,
            reusable,
            transport,
        })
    }
}

/// One file name: not empty, `.` or `..`, no `/` or NUL, at most `NAME_MAX`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}

/// A loaded, configured, canary-tested policy component.
pub struct Policy {
    sandbox: Sandbox,
    /// Shared with every policy loaded from identical bytes.
    compiled: Arc<Compiled>,
    settings: Vec<wit::Setting>,
    limits: SandboxLimits,
    capabilities: Capabilities,
    idle: Mutex<Vec<Warm>>,
    max_idle: usize,
    name: String,
    /// A moving average of this policy's `decide` wall time, ns.
    typical_ns: AtomicU64,
    /// When `decide` was last called, in ms since `epoch` (see `reclaim`).
    last_call_ms: AtomicU64,
    epoch: Instant,
}

/// A policy whose calls typically take longer than this is called off the
/// async workers (`Policy::is_slow`).
const SLOW: Duration = Duration::from_micros(200);

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.compiled.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Warm instances one policy keeps idle between requests.
fn max_idle_instances() -> usize {
    2 * cores()
}

/// Pooling-allocator slots one policy can hold at once: its idle instances
/// plus one in flight per worker (at most one per core), doubled because a
/// reload briefly keeps the old policy beside the new one.
pub fn slots_per_policy() -> u32 {
    u32::try_from(2 * (max_idle_instances() + cores())).unwrap_or(u32::MAX)
}

impl Policy {
    /// Loads a component from a file (`None`: the built-in default policy).
    pub fn load(
        sandbox: &Sandbox,
        file: Option<&Path>,
        settings: &[wit::Setting],
        limits: SandboxLimits,
    ) -> Result<Policy, LoadError> {
        match file {
            Some(path) => {
                let name = path.display().to_string();
                let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                    path: name.clone(),
                    source,
                })?;
                Policy::from_bytes(sandbox, &bytes, &name, settings, limits)
            }
            None => Policy::from_bytes(
                sandbox,
                DEFAULT_POLICY,
                "built-in default",
                settings,
                limits,
            ),
        }
    }

    /// Compiles (or shares the compiled code of identical bytes), links,
    /// configures and canary-tests a component. The canary's instance is not
    /// kept: a policy holds no instance until its first request.
    pub fn from_bytes(
        sandbox: &Sandbox,
        bytes: &[u8],
        name: &str,
        settings: &[wit::Setting],
        limits: SandboxLimits,
    ) -> Result<Policy, LoadError> {
        let compiled = sandbox.components.get(&sandbox.engine, bytes)?;
        let mut policy = Policy {
            sandbox: sandbox.clone(),
            compiled,
            settings: settings.to_vec(),
            limits,
            // Replaced by what `configure` returns, below.
            capabilities: Capabilities {
                index_names: Vec::new(),
                siblings: Vec::new(),
                fields: Fields::All,
                reusable: false,
                transport: Transport {
                    chunk_size: 0,
                    zero_copy: true,
                },
            },
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle_instances(),
            name: name.to_owned(),
            typical_ns: AtomicU64::new(0),
            last_call_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        // The canary: a fresh instance must configure and then decide a plain
        // request before this policy may serve anyone.
        let mut warm = policy.instantiate().map_err(LoadError::Instantiate)?;
        let configured = policy
            .configure(&mut warm)
            .map_err(LoadError::Configure)?
            .map_err(LoadError::Refused)?;
        policy.capabilities = Capabilities::check(configured)?;
        policy.idle.lock().expect("not poisoned").push(warm);
        let (decision, transport) = policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .map_err(|e| match e {
                CallError::Invalid(rule) => LoadError::CanaryInvalid(rule),
                fault => LoadError::Canary(fault),
            })?;
        decision::validate(
            decision,
            transport,
            &crate::resolve::Found::Missing,
            &crate::config::TransferConfig::default(),
        )
        .map_err(LoadError::CanaryInvalid)?;
        // An idle policy holds no instance (and so no pool slot or linear
        // memory): many tenants share few policies, and one nobody asks for
        // should cost only its settings.
        policy.idle.lock().expect("not poisoned").clear();
        Ok(policy)
    }

    /// What the policy asked of the host.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The policy's name for log lines (its file, or "built-in default").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this policy's calls typically take long enough (over 200 µs)
    /// that they should not run on an async worker, where they would delay
    /// every other request queued there.
    pub fn is_slow(&self) -> bool {
        self.typical_ns.load(Ordering::Relaxed) > SLOW.as_nanos() as u64
    }

    /// The `sluice:policy` version the component was built against.
    pub fn version(&self) -> &'static str {
        self.compiled.version
    }

    /// Drops the idle instances if no call came for `idle_for`: a tenant
    /// that went quiet gives its pool slots and memory back, and its next
    /// request makes a fresh instance.
    pub fn reclaim(&self, idle_for: Duration) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_call_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < u64::try_from(idle_for.as_millis()).unwrap_or(u64::MAX) {
            return;
        }
        let dropped = std::mem::take(&mut *self.idle.lock().expect("not poisoned"));
        if !dropped.is_empty() {
            stats::add(&stats::get().instances_reclaimed, dropped.len() as u64);
        }
    }

    /// Idle instances held now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().expect("not poisoned").len()
    }

    fn instantiate(&self) -> Result<Warm, CallError> {
        let _running = self.sandbox.running();
        let warm = Warm::new(&self.sandbox, &self.compiled.pre, self.limits)?;
        stats::add(&stats::get().policy_instances, 1);
        Ok(warm)
    }

    fn configure(&self, warm: &mut Warm) -> Result<Result<Configured, String>, CallError> {
        warm.arm(&self.sandbox);
        let _running = self.sandbox.running();
        warm.configure(&self.settings, host_limits())
    }

    /// Calls `decide` on a warm instance (creating one if none is idle);
    /// returns the decision and how its file bytes may be moved.
    pub fn decide(
        &self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<(wit::Decision, Transport), CallError> {
        stats::add(&stats::get().policy_calls, 1);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_call_ms.store(now, Ordering::Relaxed);
        let idle = self.idle.lock().expect("not poisoned").pop();
        let mut warm = match idle {
            Some(w) => w,
            None => {
                let mut w = self.instantiate()?;
                // It accepted these settings at load; refusing them now means
                // it is not the pure function of its settings it should be.
                self.configure(&mut w)?.map_err(|message| {
                    CallError::Trap(format!(
                        "configure refused settings it had accepted: {message}"
                    ))
                })?;
                w
            }
        };
        warm.arm(&self.sandbox);
        let running = self.sandbox.running();
        let start = Instant::now();
        let result = warm.decide(req, entry, self.capabilities.transport);
        drop(running);
        // An exponential moving average (weight 1/8): racy updates from two
        // threads lose a sample, which a moving average can afford.
        let elapsed = start.elapsed();
        stats::get().policy_latency.observe(elapsed);
        let took = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let typical = self.typical_ns.load(Ordering::Relaxed);
        self.typical_ns
            .store(typical - typical / 8 + took / 8, Ordering::Relaxed);
        match result.as_ref().map_err(CallError::kind) {
            Ok(_) | Err(None) => {
                let mut idle = self.idle.lock().expect("not poisoned");
                if idle.len() < self.max_idle {
                    idle.push(warm);
                }
            }
            Err(Some(kind)) => {
                // The instance is dropped here: after a trap its memory and
                // globals may be mid-update, so it is never called again.
                stats::add(&stats::get().policy_traps, 1);
                stats::add(&stats::get().faults[kind], 1);
            }
        }
        result
    }
}

/// Runs a call into wasm, turning a panic in a host function it called (e.g.
/// a WASI import that tries to block on the tokio runtime) into an error, so
/// the caller answers 500 and retires the instance instead of unwinding
/// through hyper and dropping the connection.
fn guarded<R>(call: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(wasmtime::Error::msg(format!(
                "a host function called by the policy panicked: {message}"
            )))
        }
    }
}

/// The request of the canary call at load (documented in the WIT).
fn canary_request() -> wit::Request {
    wit::Request {
        method: "GET".into(),
        path: "/".into(),
        raw_query: None,
        headers: vec![wit::Header {
            name: "host".into(),
            value: "localhost".into(),
        }],
        tls: false,
        version: wit::HttpVersion::Http11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn load(bytes: &[u8]) -> Result<Policy, LoadError> {
        let settings = SandboxConfig::default();
        let sandbox = Sandbox::new(&settings).unwrap();
        Policy::from_bytes(&sandbox, bytes, "test", &[], settings.limits())
    }

    fn fixture_0_1() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/policy-0.1.0.wasm"
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn warm_instances_are_reused() {
        let policy = load(DEFAULT_POLICY).unwrap();
        for _ in 0..50 {
            policy
                .decide(&canary_request(), &wit::Entry::Missing)
                .unwrap();
        }
        // Sequential calls share the one instance the canary left warm.
        assert_eq!(policy.idle.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_idle_policy_holds_no_instance() {
        let policy = load(DEFAULT_POLICY).unwrap();
        assert_eq!(
            policy.idle_instances(),
            0,
            "the canary's instance is dropped"
        );
        policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(policy.idle_instances(), 1, "made on the first call");
        policy.reclaim(Duration::from_secs(60));
        assert_eq!(policy.idle_instances(), 1, "called recently: kept");
        std::thread::sleep(Duration::from_millis(20));
        policy.reclaim(Duration::from_millis(10));
        assert_eq!(policy.idle_instances(), 0, "quiet: reclaimed");
        // And the next call makes a fresh one.
        let (decision, _) = policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(decision.status, 404);
    }

    #[test]
    fn identical_bytes_compile_once() {
        let settings = SandboxConfig::default();
        let sandbox = Sandbox::new(&settings).unwrap();
        let load = |name| {
            Policy::from_bytes(&sandbox, DEFAULT_POLICY, name, &[], settings.limits()).unwrap()
        };
        let (a, b) = (load("a"), load("b"));
        assert!(Arc::ptr_eq(&a.compiled, &b.compiled));
        let mut other = DEFAULT_POLICY.to_vec();
        // A custom section appended: other bytes, the same behaviour.
        other.extend_from_slice(&[0, 4, 3, b'x', b'y', b'z']);
        let c = Policy::from_bytes(&sandbox, &other, "c", &[], settings.limits()).unwrap();
        assert!(!Arc::ptr_eq(&a.compiled, &c.compiled));
    }

    #[test]
    fn versions_are_read_from_the_component() {
        let current = load(DEFAULT_POLICY).unwrap();
        assert_eq!(current.version(), "0.2.0");
        assert!(current.capabilities().reusable);
        let old = load(&fixture_0_1()).unwrap();
        assert_eq!(old.version(), "0.1.0");
        assert_eq!(old.capabilities().fields, Fields::All);
        assert!(!old.capabilities().reusable);
        let (decision, _) = old.decide(&canary_request(), &wit::Entry::Missing).unwrap();
        assert_eq!(decision.status, 404);
    }

    #[test]
    fn broken_components_are_refused() {
        assert!(matches!(load(b"garbage"), Err(LoadError::Compile(_))));
        assert!(matches!(load(b""), Err(LoadError::Compile(_))));
        // A core module is not a component.
        assert!(matches!(
            load(b"\0asm\x01\0\0\0"),
            Err(LoadError::Compile(_))
        ));
        // The empty component imports no sluice:policy package at all.
        let e = load(b"\0asm\x0d\0\x01\0").unwrap_err();
        assert!(matches!(e, LoadError::Version { found: None }), "{e}");
        assert!(e.to_string().contains("0.2.0"), "{e}");
    }

    #[test]
    fn capabilities_over_the_limits_are_refused() {
        let caps = |index_names: Vec<&str>, headers: Vec<&str>| {
            Capabilities::check(Configured::V0_2(wit::Capabilities {
                index_names: index_names.into_iter().map(String::from).collect(),
                siblings: vec![Coding::Gzip, Coding::Gzip, Coding::Br],
                request_headers: headers.into_iter().map(String::from).collect(),
                query: false,
                reusable: true,
                chunk_size: 0,
                zero_copy: true,
            }))
        };
        let ok = caps(vec!["index.html"], vec!["range"]).unwrap();
        assert_eq!(
            ok.siblings,
            vec![Coding::Gzip, Coding::Br],
            "duplicates dropped"
        );
        let many: Vec<&str> = std::iter::repeat_n("index.html", MAX_INDEX_NAMES + 1).collect();
        assert_eq!(
            caps(many, vec![]).unwrap_err(),
            CapabilityError::IndexNameCount(MAX_INDEX_NAMES + 1)
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", ".", "..", "a/b", "a\0b", long.as_str()] {
            assert!(matches!(
                caps(vec![bad], vec![]),
                Err(CapabilityError::IndexName(_))
            ));
        }
        let many: Vec<&str> = std::iter::repeat_n("range", MAX_REQUEST_HEADERS + 1).collect();
        assert!(matches!(
            caps(vec![], many),
            Err(CapabilityError::RequestHeaderCount(_))
        ));
        for bad in ["Range", "bad name", ""] {
            assert!(matches!(
                caps(vec![], vec![bad]),
                Err(CapabilityError::RequestHeader(_))
            ));
        }
    }

    #[test]
    fn host_panics_become_errors() {
        let e = guarded::<()>(|| panic!("boom")).unwrap_err();
        assert!(format!("{e}").contains("boom"));
        assert_eq!(guarded(|| Ok(5)).unwrap(), 5);
    }
}
