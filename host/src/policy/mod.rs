//! Loading, limiting and calling policy components.
//!
//! A [`Prepared`] policy is one compiled component with its settings and
//! limits, configured and canary-tested: immutable, and shared by the sites
//! that load the same. A [`Policy`] is one site's use of it: its calls run on
//! *warm* instances of that site's own, kept idle between requests in a
//! host-wide set (`idle`) and reused (measured with `host/benches/policy.rs`;
//! see `host/benches/RESULTS.md`). An instance that traps, overruns its
//! deadline or hits a limit is dropped, never reused: its state is suspect.
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
mod idle;
mod instance;
mod shared;
mod v0_1;
mod wasi;
pub mod wit;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderName;

pub use compiled::CacheDirError;
use compiled::Compiled;
pub use engine::{pool_for, wasmtime_config, Sandbox, MAX_WASM_STACK};
pub use instance::Exceeded;
use instance::{ConfigureResult, Configured, Warm};
pub use shared::Loader;

use crate::coding::Coding;
use crate::config::SandboxLimits;
use crate::decision;
use crate::policy_text::PolicyText;
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
    #[error("not a valid WebAssembly component: {0}")]
    Compile(PolicyText),
    #[error(
        "built against {}; this host supports sluice:policy@{}",
        .found.as_ref().map_or("no sluice:policy package".to_owned(), |v| format!("sluice:policy@{v}")),
        wit::SUPPORTED.join(", @")
    )]
    Version { found: Option<PolicyText> },
    #[error(
        "the component imports `{0}`, which no sluice host provides: a policy makes no HTTP \
         requests. ComponentizeJS links wasi:http unless told not to: build with \
         `--disable http fetch-event` (as tests/policies/js/build.sh does)"
    )]
    WasiHttp(PolicyText),
    #[error("component does not fit sluice:policy@{version}: {reason}")]
    Link {
        version: &'static str,
        reason: PolicyText,
    },
    #[error("cannot instantiate the policy: {0}")]
    Instantiate(CallError),
    #[error("`configure` failed: {0}")]
    Configure(CallError),
    #[error("policy refused its settings: {0}")]
    Refused(PolicyText),
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
    #[error(
        "a new policy instance used up its {0:?} CPU-time budget for instantiation, `configure` \
         and its first `decide` (`deadline-ms` plus the warm-up allowance `warmup-ms`)"
    )]
    Warmup(Duration),
    #[error("policy ran past its {0:?} wall-clock ceiling (`wall-ms`)")]
    WallClock(Duration),
    #[error("policy exceeded a limit: {0}")]
    Exceeded(Exceeded),
    #[error("policy hit a wasm stack overflow (`stack` in [sandbox])")]
    Stack,
    #[error("policy trapped: {0}")]
    Trap(PolicyText),
    #[error("could not instantiate the policy: {0}")]
    Instantiate(PolicyText),
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
            CallError::Warmup(_) => "warmup",
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
    IndexName(PolicyText),
    #[error("{0} request headers, over the limit of {MAX_REQUEST_HEADERS}")]
    RequestHeaderCount(usize),
    #[error("request header {0:?} is not a lower-case field name")]
    RequestHeader(PolicyText),
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
                            _ => Err(CapabilityError::RequestHeader(n.into())),
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
            return Err(CapabilityError::IndexName(bad.as_str().into()));
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

/// A compiled, configured, canary-tested policy: a component with its
/// settings and limits and what it asked of the host. Immutable once
/// loaded, so sites with the same component, settings and limits share one
/// (see `shared.rs`); it holds no instance. A site calls it through its own
/// [`Policy`], which holds that site's instances.
pub struct Prepared {
    sandbox: Sandbox,
    /// Shared with every policy loaded from identical bytes.
    compiled: Arc<Compiled>,
    settings: Vec<wit::Setting>,
    limits: SandboxLimits,
    capabilities: Capabilities,
    name: String,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("name", &self.name)
            .field("version", &self.compiled.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A policy whose calls typically take longer than this is called off the
/// async workers (`Policy::is_slow`).
const SLOW: Duration = Duration::from_micros(200);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Warm instances one site keeps idle between requests.
fn max_idle_instances() -> usize {
    2 * cores()
}

/// Pooling-allocator slots one site can hold at once: its idle instances
/// plus one in flight per worker (at most one per core), doubled because a
/// reload briefly keeps the old policy beside the new one.
pub fn slots_per_site() -> u32 {
    u32::try_from(2 * (max_idle_instances() + cores())).unwrap_or(u32::MAX)
}

impl Prepared {
    /// Compiles (or shares the compiled code of identical bytes), links,
    /// configures and canary-tests a component. The canary's instance is not
    /// kept: a policy holds no instance until a site's first request.
    pub fn from_bytes(
        sandbox: &Sandbox,
        bytes: &[u8],
        name: &str,
        settings: &[wit::Setting],
        limits: SandboxLimits,
    ) -> Result<Prepared, LoadError> {
        let compiled = sandbox.components.get(&sandbox.engine, bytes)?;
        let mut prepared = Prepared {
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
            name: name.to_owned(),
        };
        // The canary: a fresh instance must configure and then decide a plain
        // request before this policy may serve anyone, all within the
        // warm-up budget, as every new instance will.
        let (mut warm, configured) = prepared.instance().map_err(LoadError::Instantiate)?;
        let configured = configured
            .map_err(LoadError::Configure)?
            .map_err(|message| LoadError::Refused(message.into()))?;
        prepared.capabilities = Capabilities::check(configured)?;
        let (decision, transport) = warm
            .decide(
                &prepared.sandbox,
                &canary_request(),
                &wit::Entry::Missing,
                prepared.capabilities.transport,
            )
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
        // The canary's instance is dropped here: a policy nobody asks for
        // should cost only its settings, and an instance belongs to one site.
        Ok(prepared)
    }

    /// A new instance: instantiated, then `configure`d, within its warm-up
    /// budget (which its first `decide` continues). The outer error is a
    /// fault of instantiation or `configure`; the inner one `configure`'s
    /// own answer. When every pool slot is taken, the least recently used
    /// idle instance of any site is dropped to free one (see `idle`).
    fn instance(&self) -> Result<(Warm, ConfigureResult), CallError> {
        let mut warm = loop {
            let made = {
                let _running = self.sandbox.running();
                Warm::new(&self.sandbox, &self.compiled.pre, self.limits)
            };
            match made {
                Err(CallError::Pool(_)) if self.sandbox.idle.evict_lru() => continue,
                made => break made?,
            }
        };
        stats::add(&stats::get().policy_instances, 1);
        let configured = warm.configure(&self.sandbox, &self.settings, host_limits());
        Ok((warm, configured))
    }

    /// A new instance for a site's request, configured with the settings it
    /// accepted at load.
    fn fresh(&self) -> Result<Warm, CallError> {
        let (warm, configured) = self.instance()?;
        // It accepted these settings at load; refusing them now means it is
        // not the pure function of its settings it should be.
        configured?.map_err(|message| {
            CallError::Trap(format!("configure refused settings it had accepted: {message}").into())
        })?;
        Ok(warm)
    }
}

/// One site's policy: a [`Prepared`] policy (perhaps shared with other
/// sites) and this site's own instances, kept in the host-wide idle set
/// under this site's name (`idle`). An instance, its memory and anything a
/// call can write belong to one site; so does the moving average that says
/// whether its calls are slow.
pub struct Policy {
    prepared: Arc<Prepared>,
    owner: idle::Owner,
    /// A moving average of this site's `decide` wall time, ns (warm-up
    /// calls excluded).
    typical_ns: AtomicU64,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("prepared", &self.prepared)
            .finish_non_exhaustive()
    }
}

impl Drop for Policy {
    /// The site's policy was replaced (a reload) or the site is gone: its
    /// idle instances are of no use to anyone else.
    fn drop(&mut self) {
        self.prepared.sandbox.idle.forget(self.owner);
    }
}

impl Policy {
    /// A site's policy over `prepared`, holding no instance yet.
    pub fn new(prepared: Arc<Prepared>) -> Policy {
        let owner = prepared.sandbox.idle.owner();
        Policy {
            prepared,
            owner,
            typical_ns: AtomicU64::new(0),
        }
    }

    /// Loads a component from a file (`None`: the built-in default policy),
    /// for one site.
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

    /// [`Prepared::from_bytes`], for one site.
    pub fn from_bytes(
        sandbox: &Sandbox,
        bytes: &[u8],
        name: &str,
        settings: &[wit::Setting],
        limits: SandboxLimits,
    ) -> Result<Policy, LoadError> {
        Prepared::from_bytes(sandbox, bytes, name, settings, limits)
            .map(|p| Policy::new(Arc::new(p)))
    }

    /// What the policy asked of the host.
    pub fn capabilities(&self) -> &Capabilities {
        &self.prepared.capabilities
    }

    /// The policy's name for log lines (its file, or "built-in default").
    pub fn name(&self) -> &str {
        &self.prepared.name
    }

    /// The `sluice:policy` version the component was built against.
    pub fn version(&self) -> &'static str {
        self.prepared.compiled.version
    }

    /// The shared, immutable part.
    pub fn prepared(&self) -> &Arc<Prepared> {
        &self.prepared
    }

    /// Whether this site's calls typically take long enough (over 200 µs)
    /// that they should not run on an async worker, where they would delay
    /// every other request queued there.
    pub fn is_slow(&self) -> bool {
        self.typical_ns.load(Ordering::Relaxed) > SLOW.as_nanos() as u64
    }

    /// Idle instances this site holds now.
    pub fn idle_instances(&self) -> usize {
        self.prepared.sandbox.idle.held(self.owner)
    }

    /// Starts a call: takes one of this site's idle instances, if it has
    /// one (see [`Call::is_slow`]).
    pub fn call(&self) -> Call<'_> {
        Call {
            policy: self,
            warm: self.prepared.sandbox.idle.take(self.owner),
        }
    }

    /// Calls `decide` on one of this site's instances (creating one if
    /// none is idle); returns the decision and how its file bytes may be
    /// moved.
    pub fn decide(
        &self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<(wit::Decision, Transport), CallError> {
        self.call().decide(req, entry)
    }
}

/// A call about to be made on a site's policy, with the idle instance it
/// will run on, if the site had one.
pub struct Call<'a> {
    policy: &'a Policy,
    warm: Option<Warm>,
}

impl Call<'_> {
    /// Whether the call should run off the async workers: the site's calls
    /// are typically slow, or this one first makes and warms up a new
    /// instance (up to `warmup-ms` of CPU time more than a call).
    pub fn is_slow(&self) -> bool {
        self.warm.is_none() || self.policy.is_slow()
    }

    /// Calls `decide`; returns the decision and how its file bytes may be
    /// moved.
    pub fn decide(
        self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<(wit::Decision, Transport), CallError> {
        stats::add(&stats::get().policy_calls, 1);
        let policy = self.policy;
        let prepared = &*policy.prepared;
        let mut warm = match self.warm {
            Some(w) => w,
            None => prepared.fresh().inspect_err(count_fault)?,
        };
        let warming = warm.is_new();
        let start = Instant::now();
        let result = warm.decide(
            &prepared.sandbox,
            req,
            entry,
            prepared.capabilities.transport,
        );
        let elapsed = start.elapsed();
        stats::get().policy_latency.observe(elapsed);
        if warming {
            tracing::debug!(
                policy = prepared.name,
                cpu_us = warm.cpu_used().as_micros() as u64,
                budget_ms = prepared.limits.warmup_budget().as_millis() as u64,
                "new instance warmed up (instantiate, configure, first decide; `warmup-ms`)"
            );
        } else {
            // An exponential moving average (weight 1/8): racy updates from
            // two threads lose a sample, which a moving average can afford.
            // A new instance's first call is not typical of the site.
            let took = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
            let typical = policy.typical_ns.load(Ordering::Relaxed);
            policy
                .typical_ns
                .store(typical - typical / 8 + took / 8, Ordering::Relaxed);
        }
        match result.as_ref().map_err(CallError::kind) {
            Ok(_) | Err(None) => {
                prepared
                    .sandbox
                    .idle
                    .give(policy.owner, warm, max_idle_instances());
            }
            Err(Some(_)) => {
                // The instance is dropped here: after a trap its memory and
                // globals may be mid-update, so it is never called again.
                drop(warm);
                if let Err(e) = &result {
                    count_fault(e);
                }
            }
        }
        result
    }
}

/// Counts a failed call by kind of fault (an invalid decision is not one).
fn count_fault(e: &CallError) {
    if let Some(kind) = e.kind() {
        stats::add(&stats::get().policy_traps, 1);
        stats::add(&stats::get().faults[kind], 1);
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
        // Sequential calls share the one instance the first call made.
        assert_eq!(policy.idle_instances(), 1);
        assert_eq!(policy.prepared.sandbox.idle_instances().0, 1);
    }

    #[test]
    fn an_idle_policy_holds_no_instance() {
        let policy = load(DEFAULT_POLICY).unwrap();
        let sandbox = policy.prepared.sandbox.clone();
        assert_eq!(
            policy.idle_instances(),
            0,
            "the canary's instance is dropped"
        );
        policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(policy.idle_instances(), 1, "made on the first call");
        sandbox.reclaim_idle(Duration::from_secs(60));
        assert_eq!(policy.idle_instances(), 1, "called recently: kept");
        std::thread::sleep(Duration::from_millis(20));
        sandbox.reclaim_idle(Duration::from_millis(10));
        assert_eq!(policy.idle_instances(), 0, "quiet: reclaimed");
        // And the next call makes a fresh one.
        let (decision, _) = policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(decision.status, 404);
        // A site's policy that goes (a reload) takes its instances along.
        drop(policy);
        assert_eq!(sandbox.idle_instances(), (0, 0));
    }

    #[test]
    fn sites_sharing_a_policy_have_instances_of_their_own() {
        let a = load(DEFAULT_POLICY).unwrap();
        let b = Policy::new(a.prepared.clone());
        a.decide(&canary_request(), &wit::Entry::Missing).unwrap();
        assert_eq!((a.idle_instances(), b.idle_instances()), (1, 0));
        // b's first call makes an instance of its own, not a's.
        b.decide(&canary_request(), &wit::Entry::Missing).unwrap();
        assert_eq!((a.idle_instances(), b.idle_instances()), (1, 1));
        assert_eq!(a.prepared.sandbox.idle_instances().0, 2);
    }

    #[test]
    fn a_full_pool_takes_the_least_recently_used_idle_instance() {
        // Two slots, three sites: the third site's first call takes the
        // slot of the least recently used idle instance (site a's), instead
        // of failing.
        let config = SandboxConfig {
            instances: 2,
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::new(&config).unwrap();
        let prepared = Arc::new(
            Prepared::from_bytes(&sandbox, DEFAULT_POLICY, "t", &[], config.limits()).unwrap(),
        );
        let sites: Vec<Policy> = (0..3).map(|_| Policy::new(prepared.clone())).collect();
        for site in &sites {
            let (decision, _) = site
                .decide(&canary_request(), &wit::Entry::Missing)
                .unwrap();
            assert_eq!(decision.status, 404);
        }
        let held: Vec<usize> = sites.iter().map(Policy::idle_instances).collect();
        assert_eq!(held, [0, 1, 1]);
    }

    #[test]
    fn idle_instances_are_bounded_by_their_memory_host_wide() {
        let config = SandboxConfig::default();
        let sandbox = Sandbox::new(&config).unwrap();
        let prepared = Arc::new(
            Prepared::from_bytes(&sandbox, DEFAULT_POLICY, "t", &[], config.limits()).unwrap(),
        );
        let one = {
            let p = Policy::new(prepared.clone());
            p.decide(&canary_request(), &wit::Entry::Missing).unwrap();
            sandbox.idle_instances().1
        };
        assert!(one > 0);
        // Room for two instances' memory: a third site's instance, given
        // back, pushes out the least recently used one.
        let config = SandboxConfig {
            idle_memory: crate::config::ByteSize(2 * one),
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::new(&config).unwrap();
        let prepared = Arc::new(
            Prepared::from_bytes(&sandbox, DEFAULT_POLICY, "t", &[], config.limits()).unwrap(),
        );
        let sites: Vec<Policy> = (0..3).map(|_| Policy::new(prepared.clone())).collect();
        for i in [0, 1, 0, 2] {
            sites[i]
                .decide(&canary_request(), &wit::Entry::Missing)
                .unwrap();
        }
        let held: Vec<usize> = sites.iter().map(Policy::idle_instances).collect();
        assert_eq!(held, [1, 0, 1], "site 1 was the least recently used");
        assert_eq!(sandbox.idle_instances(), (2, 2 * one));
    }

    #[test]
    fn identical_bytes_compile_once() {
        let settings = SandboxConfig::default();
        let sandbox = Sandbox::new(&settings).unwrap();
        let load = |name| {
            Policy::from_bytes(&sandbox, DEFAULT_POLICY, name, &[], settings.limits()).unwrap()
        };
        let (a, b) = (load("a"), load("b"));
        assert!(Arc::ptr_eq(&a.prepared.compiled, &b.prepared.compiled));
        let mut other = DEFAULT_POLICY.to_vec();
        // A custom section appended: other bytes, the same behaviour.
        other.extend_from_slice(&[0, 4, 3, b'x', b'y', b'z']);
        let c = Policy::from_bytes(&sandbox, &other, "c", &[], settings.limits()).unwrap();
        assert!(!Arc::ptr_eq(&a.prepared.compiled, &c.prepared.compiled));
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
