//! Why a policy could not be loaded ([`LoadError`]) or a call produced no
//! decision ([`CallError`], with the limit an instance ran into,
//! [`Exceeded`]), and the kind of fault each call error is counted as.

use std::time::Duration;

use super::capabilities::CapabilityError;
use crate::contract::{wit, DecisionError};
use crate::policy_text::PolicyText;
use crate::stats::Fault;

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
    CanaryInvalid(DecisionError),
    #[error(transparent)]
    SettingFile(crate::config::SettingFileError),
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
    Invalid(DecisionError),
}

impl CallError {
    /// The kind of fault, as counted; `None` for an invalid decision,
    /// which is counted as one, not as a fault.
    pub fn fault(&self) -> Option<Fault> {
        Some(match self {
            CallError::Invalid(_) => return None,
            CallError::Deadline(_) => Fault::Deadline,
            CallError::Warmup(_) => Fault::Warmup,
            CallError::WallClock(_) => Fault::WallClock,
            CallError::Exceeded(Exceeded::Memory { .. }) => Fault::Memory,
            CallError::Exceeded(Exceeded::Table { .. }) => Fault::Table,
            CallError::Stack => Fault::Stack,
            CallError::Trap(_) => Fault::Trap,
            CallError::Instantiate(_) => Fault::Instantiate,
            CallError::Pool(_) => Fault::Pool,
        })
    }

    /// Whether the client should be told to come back (503: the policy ran
    /// out of a resource) rather than that the server failed (500: the
    /// policy is broken).
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, CallError::Trap(_) | CallError::Invalid(_))
    }
}

/// A limit an instance ran into. The limiter records it before failing the
/// growth, so a fault is classified by what happened, not by an error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error(
        "linear memory would grow to {desired} bytes, over the policy's memory limit of \
         {limit} bytes (`memory` in [sandbox] or the vhost)"
    )]
    Memory { desired: usize, limit: usize },
    #[error("a table would grow to {desired} elements, over the limit of {limit}")]
    Table { desired: usize, limit: usize },
}
