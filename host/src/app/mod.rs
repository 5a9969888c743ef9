//! The application: every site (virtual host) with its root and policy,
//! the sandbox they share, and what is host-wide (the body budget, the
//! caches' stores, the access log). Built once from a [`Config`]
//! ([`App::from_config`]); the service ([`crate::service`]) answers with
//! it, the listener sweeps it, the admin endpoint reloads and reads it.

mod host;
mod site;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use host::request_host;
pub use site::{Loaded, Site, SiteError, SiteSpecs, Stores, DEFAULT_SITE};

use crate::access_log::{AccessLog, AccessLogError};
use crate::config::{Config, TransferConfig};
use crate::policy::{self, CacheDirError, LoadError, Loader, Sandbox};
use crate::resolve;
use crate::stats;
use crate::transfer::budget::BodyBudget;

/// How long an idle instance is kept without a call before it is dropped
/// (its site's next request then makes a fresh one: well under a
/// millisecond for a typical policy, see BENCHMARKS.md).
const RECLAIM_AFTER: Duration = Duration::from_secs(10);

/// Why the application (every site, the sandbox, the access log) could not
/// be built; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no root directory given (`root` in the configuration, or `sluice serve DIR`)")]
    NoRoot,
    #[error("cannot set up wasmtime: {0}")]
    Sandbox(String),
    /// A `compile-cache` directory set explicitly that cannot be used.
    #[error(transparent)]
    CompileCache(#[from] CacheDirError),
    /// The default site's root or policy.
    #[error(transparent)]
    Site(SiteError),
    #[error("vhost {host}: {source}")]
    Vhost {
        host: String,
        #[source]
        source: SiteError,
    },
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
}

/// Everything the handler needs.
pub struct App {
    pub sandbox: Sandbox,
    pub transfer: TransferConfig,
    /// The host-wide budget of response-body bytes in memory
    /// (`[limits] body-memory`).
    pub body_budget: Arc<BodyBudget>,
    /// Each client connection's share of it
    /// (`[limits] body-memory-per-connection`).
    pub body_memory_per_connection: u64,
    pub default: Arc<Site>,
    pub vhosts: HashMap<String, Arc<Site>>,
    /// Where each response's line goes (`access-log`), if anywhere.
    pub access_log: Option<AccessLog>,
    /// The host-wide caches the sites share.
    pub stores: Stores,
    /// Directory listings read and held at once, all sites together
    /// ([`LISTINGS_AT_ONCE`]).
    pub listings: Arc<tokio::sync::Semaphore>,
}

/// Directory listings (for policies that ask for them) read and held at
/// once, host-wide. A listing holds up to `contract::MAX_LISTING` entries
/// (names up to 255 bytes: about 3 MiB at worst) from its read until the
/// policy has answered, and its read walks up to `resolve::listing::MAX_SCAN`
/// entries: without a bound, many clients asking for huge directories at
/// once (128 streams per HTTP/2 connection) would multiply both. Further
/// listings wait their turn, holding nothing.
pub const LISTINGS_AT_ONCE: usize = 8;

impl App {
    /// Builds the application from a configuration: the sandbox sized for
    /// every site, then each site's root and policy (compiled, configured and
    /// canary-tested).
    pub fn from_config(config: &Config) -> Result<Arc<App>, StartError> {
        if config.root.is_none() {
            return Err(StartError::NoRoot);
        }
        let SiteSpecs { default, vhosts } = SiteSpecs::from_config(config);
        let limits = default.limits;
        let largest = vhosts
            .iter()
            .map(|(_, s)| s.limits.memory)
            .fold(limits.memory, u64::max);
        // Every site has instances of its own, so the pool is sized by the
        // sites.
        let pool = policy::pool_for(
            &config.sandbox,
            u32::try_from(1 + vhosts.len()).unwrap_or(u32::MAX),
            largest,
        );
        let mut sandbox = Sandbox::new(&pool).map_err(|e| StartError::Sandbox(format!("{e:#}")))?;
        match config.compile_cache_dir() {
            None => {}
            Some((dir, explicit)) => match sandbox.set_compile_cache(&dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "compiled-policy cache"),
                Err(e) if explicit => return Err(StartError::CompileCache(e)),
                // The default location is a convenience; without it every
                // start compiles, as it would with the cache off.
                Err(e) => tracing::warn!(error = %e, "compiled-policy cache off"),
            },
        }

        let stores = Stores::new(&config.cache);
        let mut loader = Loader::new(&sandbox);
        let default = Site::open(&mut loader, DEFAULT_SITE, default, config.cache, &stores)
            .map_err(StartError::Site)?;
        let mut sites = HashMap::new();
        for (host, spec) in vhosts {
            let site =
                Site::open(&mut loader, &host, spec, config.cache, &stores).map_err(|source| {
                    StartError::Vhost {
                        host: host.clone(),
                        source,
                    }
                })?;
            sites.insert(host, Arc::new(site));
        }
        drop(loader);
        let access_log = AccessLog::open(&config.access_log, config.access_log_format)?;
        Ok(Arc::new(App {
            sandbox,
            transfer: config.transfer,
            body_budget: BodyBudget::new(config.limits.body_memory.0),
            body_memory_per_connection: config.limits.body_memory_per_connection.0,
            default: Arc::new(default),
            vhosts: sites,
            access_log,
            stores,
            listings: Arc::new(tokio::sync::Semaphore::new(LISTINGS_AT_ONCE)),
        }))
    }

    /// Whether any site is chosen by host: if not, a request's host need
    /// not be parsed to route it.
    pub fn has_vhosts(&self) -> bool {
        !self.vhosts.is_empty()
    }

    /// The site for a request's host (parsed by [`request_host`]), falling
    /// back to the default site.
    pub fn site_for(&self, host: Option<&str>) -> &Site {
        host.and_then(|h| self.vhosts.get(h))
            .unwrap_or(&self.default)
    }

    /// Every site with its name (`(default)` or its host), for reloads and
    /// metrics.
    pub fn sites(&self) -> impl Iterator<Item = (&str, &Arc<Site>)> {
        std::iter::once((DEFAULT_SITE, &self.default))
            .chain(self.vhosts.iter().map(|(h, s)| (h.as_str(), s)))
    }

    /// Reloads every site's policy (each distinct one once, see
    /// `policy::Loader`); returns the failures.
    pub fn reload(&self) -> Vec<(String, Arc<LoadError>)> {
        let mut failures = Vec::new();
        let mut loader = Loader::new(&self.sandbox);
        for (name, site) in self.sites() {
            match site.reload(&mut loader) {
                Ok(()) => {
                    tracing::info!(site = %name, policy = site.loaded().policy.name(), "policy reloaded")
                }
                Err(e) => {
                    tracing::error!(site = %name, error = %e, "policy reload refused; the old policy keeps serving");
                    failures.push((name.to_owned(), e));
                }
            }
        }
        failures
    }

    /// Closes the descriptors of open-file cache entries past their window,
    /// and drops the idle instances unused for 10 s. Call it about once per
    /// window (`serve` does, every second).
    pub fn sweep(&self) {
        resolve::sweep(&self.stores.open_files);
        self.sandbox.reclaim_idle(RECLAIM_AFTER);
    }

    /// Closes about half the descriptors the open-file caches hold, when the
    /// process has run out (`accept` failing with EMFILE); returns how many.
    pub fn release_descriptors(&self) -> u64 {
        let store = &self.stores.open_files;
        let released = store.release(store.weight().div_ceil(2));
        stats::add(&stats::get().open_file_releases, released);
        released
    }
}
