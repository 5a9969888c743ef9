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
//! The host speaks `sluice:policy@0.3.0` ([`crate::contract::wit`]); a
//! component built against 0.2.0 or 0.1.0 is recognised by the package
//! version it imports and adapted (`v0_2`, `v0_1`). Any other version is
//! refused by name.

mod bounded;
mod capabilities;
mod compiled;
mod engine;
mod error;
mod guarded;
mod idle;
mod instance;
mod prepared;
mod runtime;
mod shared;
mod sizing;
mod store;
mod v0_1;
mod v0_2;
mod wasi;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use capabilities::{Capabilities, Fields};
#[cfg(test)]
use capabilities::{CapabilityError, MAX_INDEX_NAMES, MAX_NAME_LEN, MAX_REQUEST_HEADERS};
pub use compiled::CacheDirError;
pub use engine::{pool_for, wasmtime_config, Sandbox};
pub use error::{CallError, LoadError};
use instance::Warm;
pub use prepared::{Prepared, DEFAULT_POLICY};
pub use shared::Loader;
use sizing::max_idle_instances;

use crate::config::SandboxLimits;
use crate::contract::{wit, Transport};
use crate::stats;

/// A policy whose calls typically take longer than this is called off the
/// async workers (`Policy::is_slow`).
const SLOW: Duration = Duration::from_micros(200);
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
    /// When this site last had a call retried after a suspect overrun
    /// ([`Call::decide`]), ms since [`epoch_ms`]'s start; 0 for never.
    retried_ms: AtomicU64,
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
            retried_ms: AtomicU64::new(0),
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

    /// Whether a call that overran its CPU deadline may be made once more,
    /// on a fresh instance. A thread's CPU clock charges it for more than
    /// the policy's own work: without `CONFIG_IRQ_TIME_ACCOUNTING`, network
    /// softirqs that run on top of it, and page faults in a fragmented
    /// memory (direct compaction) are its system time too. On a loaded
    /// host, about one call in 270,000 of a policy that takes ~50 µs was
    /// charged its whole 10 ms (`caches::new_keys_from_64_tenants_…`, load
    /// average ~10): a 503 a legal policy did nothing to earn. So when the
    /// site's calls typically take under a twentieth of the deadline, the
    /// overrun is more likely the machine's than the policy's, and the call
    /// is retried, at most once per second per site: a policy that loops
    /// on one path among many fast ones costs at most one more call a
    /// second (a fresh instance's: `deadline-ms` plus `warmup-ms`), and a
    /// policy whose every call loops never has a typical cost (each call is
    /// a fresh instance's, which the average leaves out) and is never
    /// retried.
    fn may_retry(&self, typical: u64, deadline: Duration) -> bool {
        if typical == 0 || u128::from(typical) * 20 >= deadline.as_nanos() {
            return false;
        }
        let now = epoch_ms();
        let last = self.retried_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .retried_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
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
    /// none is idle); returns the outcome and how its file bytes may be
    /// moved.
    pub fn decide(
        &self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<(wit::Outcome, Transport), CallError> {
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

    /// Calls `decide`; returns the outcome (a decision, or a rewrite for
    /// the caller to follow) and how its file bytes may be moved.
    pub fn decide(
        self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<(wit::Outcome, Transport), CallError> {
        self.run(req, entry, true)
    }

    /// [`Call::decide`], retried once after a suspect overrun if `retry`.
    fn run(
        self,
        req: &wit::Request,
        entry: &wit::Entry,
        retry: bool,
    ) -> Result<(wit::Outcome, Transport), CallError> {
        stats::add(&stats::get().policy_calls, 1);
        let policy = self.policy;
        let prepared = &*policy.prepared;
        let mut warm = match self.warm {
            Some(w) => w,
            None => prepared.fresh().inspect_err(count_fault)?,
        };
        let warming = warm.is_new();
        // Before this call's own time is folded in (an overrun would lift it).
        let typical = policy.typical_ns.load(Ordering::Relaxed);
        let start = Instant::now();
        let result = warm.decide(
            &prepared.sandbox.runtime,
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
        if let Err(CallError::Deadline(_)) = &result {
            if retry && !warming && policy.may_retry(typical, prepared.limits.deadline) {
                // Not the policy's doing, most likely: see `may_retry`.
                tracing::info!(
                    policy = prepared.name,
                    typical_us = typical / 1000,
                    deadline_ms = prepared.limits.deadline.as_millis() as u64,
                    "a call whose like typically takes far less overran its CPU deadline; \
                     dropped its instance and called once more on a fresh one"
                );
                drop(warm);
                count_fault(result.as_ref().unwrap_err());
                let retry = Call { policy, warm: None };
                return retry.run(req, entry, false);
            }
        }
        match result.as_ref().map_err(CallError::fault) {
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

/// Milliseconds since the first call of this function (a monotonic clock
/// for per-site rate limits).
fn epoch_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Counts a failed call by kind of fault (an invalid decision is not one).
fn count_fault(e: &CallError) {
    if let Some(kind) = e.fault() {
        stats::add(&stats::get().policy_traps, 1);
        stats::add(stats::get().fault(kind), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::Coding;
    use crate::config::SandboxConfig;
    use capabilities::Configured;
    use guarded::guarded;
    use prepared::canary_request;

    fn load(bytes: &[u8]) -> Result<Policy, LoadError> {
        let settings = SandboxConfig::default();
        let sandbox = Sandbox::new(&settings).unwrap();
        Policy::from_bytes(&sandbox, bytes, "test", &[], settings.limits())
    }

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    /// The status of an outcome that must be a response.
    fn status(outcome: wit::Outcome) -> u16 {
        match outcome {
            wit::Outcome::Respond(d) => d.status,
            wit::Outcome::Rewrite(r) => panic!("a rewrite to {:?}", r.path),
        }
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
        let (outcome, _) = policy
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(status(outcome), 404);
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
            let (outcome, _) = site
                .decide(&canary_request(), &wit::Entry::Missing)
                .unwrap();
            assert_eq!(status(outcome), 404);
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
        assert_eq!(current.version(), "0.3.0");
        assert!(current.capabilities().reusable);
        let previous = load(&fixture("policy-0.2.0.wasm")).unwrap();
        assert_eq!(previous.version(), "0.2.0");
        assert!(previous.capabilities().reusable);
        assert_eq!(previous.capabilities().listing, 0);
        let (outcome, _) = previous
            .decide(&canary_request(), &wit::Entry::Missing)
            .unwrap();
        assert_eq!(status(outcome), 404);
        let old = load(&fixture("policy-0.1.0.wasm")).unwrap();
        assert_eq!(old.version(), "0.1.0");
        assert_eq!(old.capabilities().fields, Fields::All);
        assert!(!old.capabilities().reusable);
        let (outcome, _) = old.decide(&canary_request(), &wit::Entry::Missing).unwrap();
        assert_eq!(status(outcome), 404);
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
        assert!(e.to_string().contains("0.3.0"), "{e}");
    }

    #[test]
    fn capabilities_over_the_limits_are_refused() {
        let caps = |index_names: Vec<&str>, headers: Vec<&str>| {
            Capabilities::check(Configured::V0_3(wit::Capabilities {
                index_names: index_names.into_iter().map(String::from).collect(),
                siblings: vec![Coding::Gzip, Coding::Gzip, Coding::Br],
                request_headers: headers.into_iter().map(String::from).collect(),
                query: false,
                reusable: true,
                chunk_size: 0,
                zero_copy: true,
                listing: 20_000,
            }))
        };
        let ok = caps(vec!["index.html"], vec!["range"]).unwrap();
        assert_eq!(ok.listing, crate::contract::MAX_LISTING, "clamped");
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
