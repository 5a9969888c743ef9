//! A policy loaded once: compiled (or shared), configured with its settings
//! and canary-tested, shared by every site that loads the same.

use std::sync::Arc;

use super::capabilities::{Capabilities, Fields};
use super::compiled::Compiled;
use super::engine::Sandbox;
use super::error::{CallError, LoadError};
use super::instance::{ConfigureResult, Warm};
use crate::config::SandboxLimits;
use crate::contract::{host_limits, wit, Transport};
use crate::decision;
use crate::stats;

/// The default policy, built from `guest/` by `host/build.rs`.
pub static DEFAULT_POLICY: &[u8] = include_bytes!(env!("SLUICE_DEFAULT_POLICY"));

/// A compiled, configured, canary-tested policy: a component with its
/// settings and limits and what it asked of the host. Immutable once
/// loaded, so sites with the same component, settings and limits share one
/// (see `shared.rs`); it holds no instance. A site calls it through its own
/// [`Policy`], which holds that site's instances.
pub struct Prepared {
    pub(super) sandbox: Sandbox,
    /// Shared with every policy loaded from identical bytes.
    pub(super) compiled: Arc<Compiled>,
    settings: Vec<wit::Setting>,
    pub(super) limits: SandboxLimits,
    pub(super) capabilities: Capabilities,
    pub(super) name: String,
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
        let compiled = sandbox.components.get(&sandbox.runtime.engine, bytes)?;
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
                listing: 0,
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
        let (outcome, transport) = warm
            .decide(
                &prepared.sandbox.runtime,
                &canary_request(),
                &wit::Entry::Missing,
                prepared.capabilities.transport,
            )
            .map_err(|e| match e {
                CallError::Invalid(rule) => LoadError::CanaryInvalid(rule),
                fault => LoadError::Canary(fault),
            })?;
        // A rewrite is a valid answer (a site whose `/` is an app, say); it
        // is checked as the handler checks one, but not followed: the
        // canary has no root to resolve it beneath.
        match outcome {
            wit::Outcome::Respond(decision) => {
                decision::validate(
                    decision,
                    transport,
                    &crate::resolve::Found::Missing,
                    &crate::config::TransferConfig::default(),
                )
                .map_err(LoadError::CanaryInvalid)?;
            }
            wit::Outcome::Rewrite(rewrite) => {
                decision::check_rewrite(&rewrite).map_err(LoadError::CanaryInvalid)?;
            }
        }
        // The canary's instance is dropped here: a policy nobody asks for
        // should cost only its settings, and an instance belongs to one site.
        Ok(prepared)
    }

    /// A new instance: instantiated, then `configure`d, within its warm-up
    /// budget (which its first `decide` continues). The outer error is a
    /// fault of instantiation or `configure`; the inner one `configure`'s
    /// own answer. When every pool slot is taken, the least recently used
    /// idle instance of any site is dropped to free one (see `idle`).
    pub(super) fn instance(&self) -> Result<(Warm, ConfigureResult), CallError> {
        let mut warm = loop {
            let made = {
                let _running = self.sandbox.runtime.running();
                Warm::new(&self.sandbox.runtime, &self.compiled.pre, self.limits)
            };
            match made {
                Err(CallError::Pool(_)) if self.sandbox.idle.evict_lru() => continue,
                made => break made?,
            }
        };
        stats::add(&stats::get().policy_instances, 1);
        let configured = warm.configure(&self.sandbox.runtime, &self.settings, host_limits());
        Ok((warm, configured))
    }

    /// A new instance for a site's request, configured with the settings it
    /// accepted at load.
    pub(super) fn fresh(&self) -> Result<Warm, CallError> {
        let (warm, configured) = self.instance()?;
        // It accepted these settings at load; refusing them now means it is
        // not the pure function of its settings it should be.
        configured?.map_err(|message| {
            CallError::Trap(format!("configure refused settings it had accepted: {message}").into())
        })?;
        Ok(warm)
    }
}

/// The request of the canary call at load (documented in the WIT).
pub(super) fn canary_request() -> wit::Request {
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
        hop: None,
    }
}
