//! Loading, limiting and calling policy components.
//!
//! A [`Policy`] is one compiled component with its settings and limits. Calls
//! run on *warm* instances kept in a small pool and reused across requests
//! (measured with `host/benches/policy.rs`, default policy, epoch deadline and
//! `StoreLimits` on: ~9 µs p50 a call warm, against ~80 µs for a fresh store +
//! instance + `configure` even with the pooling allocator; see
//! `host/benches/RESULTS.md`). An instance that traps, overruns its deadline or
//! hits its memory cap is dropped, never reused: its state is suspect.
//!
//! Calls are synchronous on the async worker: wasm cannot block on I/O here
//! (the WASI context is empty and every WASI import that could wait is
//! replaced, see `wasi`), so a call costs only CPU, and the epoch deadline
//! bounds how long it can hold the worker. A panic in a host function the
//! policy called is caught and treated as a trap.

pub mod bindings;
mod engine;
mod instance;
mod wasi;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use wasmtime::component::{Component, Linker};

pub use bindings::types as wit;
pub use engine::{wasmtime_config, Sandbox, MAX_WASM_STACK};
use instance::{HostState, Warm};

use crate::coding::Coding;
use crate::config::SandboxLimits;
use crate::stats;

/// The default policy, built from `guest/` by `host/build.rs`.
pub static DEFAULT_POLICY: &[u8] = include_bytes!(env!("SLUICE_DEFAULT_POLICY"));

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid component: {0:#}")]
    Compile(wasmtime::Error),
    #[error("component does not implement sluice:policy@0.1.0: {0:#}")]
    Link(wasmtime::Error),
    #[error("policy refused its settings: {0}")]
    Configure(String),
    #[error("canary call failed: {0}")]
    Canary(#[from] CallError),
}

/// Why a policy call produced no decision.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("policy ran past its {0:?} deadline")]
    Deadline(Duration),
    #[error("policy exceeded a resource limit: {0}")]
    Exhausted(String),
    #[error("policy trapped: {0}")]
    Trap(String),
    #[error("could not instantiate policy: {0:#}")]
    Instantiate(wasmtime::Error),
}

/// What the policy asked the host to look for on disk.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub index_names: Vec<String>,
    pub siblings: Vec<Coding>,
}

/// A loaded, configured, canary-tested policy component.
pub struct Policy {
    sandbox: Sandbox,
    pre: bindings::PolicyPre<HostState>,
    settings: Vec<wit::Setting>,
    limits: SandboxLimits,
    capabilities: Capabilities,
    idle: Mutex<Vec<Warm>>,
    max_idle: usize,
    name: String,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
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
        settings: &[(String, String)],
        limits: SandboxLimits,
    ) -> Result<Policy, LoadError> {
        match file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Policy::from_bytes(
                    sandbox,
                    &bytes,
                    &path.display().to_string(),
                    settings,
                    limits,
                )
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

    /// Compiles, links, configures and canary-tests a component.
    pub fn from_bytes(
        sandbox: &Sandbox,
        bytes: &[u8],
        name: &str,
        settings: &[(String, String)],
        limits: SandboxLimits,
    ) -> Result<Policy, LoadError> {
        let component = Component::new(&sandbox.engine, bytes).map_err(LoadError::Compile)?;
        let mut linker = Linker::<HostState>::new(&sandbox.engine);
        // A std guest imports a dozen WASI interfaces even when it does no I/O;
        // they are linked against an empty context that grants nothing.
        // Those that could block the thread are replaced (see `wasi`).
        wasi::add_to_linker(&mut linker).map_err(LoadError::Link)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(LoadError::Link)?;
        let pre = bindings::PolicyPre::new(instance_pre).map_err(LoadError::Link)?;
        let mut policy = Policy {
            sandbox: sandbox.clone(),
            pre,
            settings: settings
                .iter()
                .map(|(name, value)| wit::Setting {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            limits,
            capabilities: Capabilities::default(),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle_instances(),
            name: name.to_owned(),
        };
        // The canary: a fresh instance must configure and then decide a plain
        // request before this policy may serve anyone.
        let (warm, caps) = policy.instantiate()?;
        policy.capabilities = caps;
        policy.idle.lock().expect("not poisoned").push(warm);
        policy.decide(&canary_request(), &wit::Entry::Missing)?;
        Ok(policy)
    }

    /// What the policy asked the host to look for.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The policy's name for log lines (its file, or "built-in default").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This policy's limits.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    fn instantiate(&self) -> Result<(Warm, Capabilities), LoadError> {
        let _running = self.sandbox.running();
        let mut warm = guarded(|| Warm::new(&self.sandbox, &self.pre, self.limits))
            .map_err(CallError::Instantiate)?;
        warm.arm(&self.sandbox, self.limits.deadline);
        let caps = match guarded(|| warm.configure(&self.settings)) {
            Ok(Ok(caps)) => caps,
            Ok(Err(message)) => return Err(LoadError::Configure(message)),
            Err(e) => return Err(LoadError::Canary(classify(e, self.limits.deadline))),
        };
        stats::add(&stats::get().policy_instances, 1);
        let caps = Capabilities {
            index_names: caps.index_names,
            siblings: caps.siblings.into_iter().map(Coding::from).collect(),
        };
        Ok((warm, caps))
    }

    /// Calls `decide` on a warm instance (creating one if none is idle).
    pub fn decide(
        &self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> Result<wit::Decision, CallError> {
        stats::add(&stats::get().policy_calls, 1);
        let idle = self.idle.lock().expect("not poisoned").pop();
        let mut warm = match idle {
            Some(w) => w,
            None => match self.instantiate() {
                Ok((w, _)) => w,
                Err(LoadError::Canary(e)) => return Err(e),
                Err(e) => return Err(CallError::Trap(e.to_string())),
            },
        };
        warm.arm(&self.sandbox, self.limits.deadline);
        let running = self.sandbox.running();
        let result = guarded(|| warm.decide(req, entry));
        drop(running);
        match result {
            Ok(decision) => {
                let mut idle = self.idle.lock().expect("not poisoned");
                if idle.len() < self.max_idle {
                    idle.push(warm);
                }
                Ok(decision)
            }
            Err(e) => {
                // The instance is dropped here: after a trap its memory and
                // globals may be mid-update, so it is never called again.
                stats::add(&stats::get().policy_traps, 1);
                Err(classify(e, self.limits.deadline))
            }
        }
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

/// Sorts a wasmtime error into what the client should be told.
fn classify(e: wasmtime::Error, deadline: Duration) -> CallError {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallError::Deadline(deadline),
        Some(wasmtime::Trap::StackOverflow) => CallError::Exhausted("wasm stack overflow".into()),
        Some(wasmtime::Trap::AllocationTooLarge) => {
            CallError::Exhausted("allocation too large".into())
        }
        Some(trap) => CallError::Trap(trap.to_string()),
        None => {
            let text = format!("{e:#}");
            if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
                CallError::Exhausted(text)
            } else {
                CallError::Trap(text)
            }
        }
    }
}

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

/// The WIT's content codings are the host's: one conversion each way, at the
/// boundary.
impl From<wit::ContentCoding> for Coding {
    fn from(c: wit::ContentCoding) -> Coding {
        match c {
            wit::ContentCoding::Gzip => Coding::Gzip,
            wit::ContentCoding::Br => Coding::Br,
            wit::ContentCoding::Zstd => Coding::Zstd,
        }
    }
}

impl From<Coding> for wit::ContentCoding {
    fn from(c: Coding) -> wit::ContentCoding {
        match c {
            Coding::Gzip => wit::ContentCoding::Gzip,
            Coding::Br => wit::ContentCoding::Br,
            Coding::Zstd => wit::ContentCoding::Zstd,
        }
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
    fn broken_components_are_refused() {
        assert!(matches!(load(b"garbage"), Err(LoadError::Compile(_))));
        assert!(matches!(load(b""), Err(LoadError::Compile(_))));
        // A core module is not a component.
        assert!(matches!(
            load(b"\0asm\x01\0\0\0"),
            Err(LoadError::Compile(_))
        ));
        // The empty component implements no `configure`/`decide`.
        assert!(matches!(
            load(b"\0asm\x0d\0\x01\0"),
            Err(LoadError::Link(_))
        ));
    }

    #[test]
    fn host_panics_become_errors() {
        let e = guarded::<()>(|| panic!("boom")).unwrap_err();
        assert!(format!("{e}").contains("boom"));
        assert_eq!(guarded(|| Ok(5)).unwrap(), 5);
    }
}
