//! Sites (virtual hosts): a root and a policy each, chosen by `Host`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Request;

use crate::config::{SandboxLimits, TransferConfig};
use crate::policy::{LoadError, Policy, Sandbox};
use crate::resolve::Root;
use crate::stats;

/// Where a site's policy comes from, kept for reloads.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub root: PathBuf,
    pub policy_file: Option<PathBuf>,
    pub settings: Vec<(String, String)>,
    pub limits: SandboxLimits,
}

impl SiteSpec {
    /// Compiles, configures and canary-tests this site's policy.
    fn load_policy(&self, sandbox: &Sandbox) -> Result<Policy, LoadError> {
        Policy::load(
            sandbox,
            self.policy_file.as_deref(),
            &self.settings,
            self.limits,
        )
    }
}

/// One served root with its policy.
pub struct Site {
    pub root: Root,
    policy: ArcSwap<Policy>,
    spec: SiteSpec,
}

impl Site {
    /// Opens the root and loads the policy (compile, configure, canary).
    pub fn open(sandbox: &Sandbox, spec: SiteSpec) -> anyhow::Result<Site> {
        let root = Root::open(&spec.root)?;
        let policy = spec.load_policy(sandbox)?;
        Ok(Site {
            root,
            policy: ArcSwap::from_pointee(policy),
            spec,
        })
    }

    /// The current policy. In-flight requests keep the one they started with.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Loads the policy file again; swaps it in only if it compiles, links,
    /// configures and passes the canary call. Otherwise the old one stays.
    pub fn reload(&self, sandbox: &Sandbox) -> Result<(), LoadError> {
        match self.spec.load_policy(sandbox) {
            Ok(p) => {
                self.policy.store(Arc::new(p));
                stats::add(&stats::get().reloads, 1);
                Ok(())
            }
            Err(e) => {
                stats::add(&stats::get().reload_failures, 1);
                Err(e)
            }
        }
    }
}

/// Everything the handler needs.
pub struct App {
    pub sandbox: Sandbox,
    pub transfer: TransferConfig,
    pub default: Arc<Site>,
    pub vhosts: HashMap<String, Arc<Site>>,
}

impl App {
    /// The site for a request's host (`Host` header, or the URI authority),
    /// falling back to the default site.
    pub fn site_for<B>(&self, req: &Request<B>) -> &Site {
        if self.vhosts.is_empty() {
            return &self.default;
        }
        let host = req
            .uri()
            .host()
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .map(|h| strip_port(h).trim_end_matches('.').to_ascii_lowercase());
        host.and_then(|h| self.vhosts.get(&h))
            .unwrap_or(&self.default)
    }

    /// Reloads every site's policy; returns the failures.
    pub fn reload(&self) -> Vec<(String, LoadError)> {
        let mut failures = Vec::new();
        let all = std::iter::once(("(default)".to_owned(), &self.default))
            .chain(self.vhosts.iter().map(|(h, s)| (h.clone(), s)));
        for (name, site) in all {
            match site.reload(&self.sandbox) {
                Ok(()) => {
                    tracing::info!(site = %name, policy = site.policy().name(), "policy reloaded")
                }
                Err(e) => {
                    tracing::error!(site = %name, error = %e, "policy reload refused; the old policy keeps serving");
                    failures.push((name, e));
                }
            }
        }
        failures
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}
