//! Sites (virtual hosts): a root and a policy each, and the one place the
//! configuration's inheritance is written ([`SiteSpecs::from_config`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{
    policy_settings, read_settings, wall_ceiling, CacheConfig, Config, PolicySetting, SandboxLimits,
};
use crate::decision::reuse::{self, DecisionCache, Decisions};
use crate::policy::{LoadError, Loader, Policy};
use crate::resolve::{self, FileCache, Found, NoDescriptors, OpenFiles, Root, RootError};
use crate::stats;

/// Where a site's policy comes from, kept for reloads.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub root: PathBuf,
    pub policy_file: Option<PathBuf>,
    /// As configured: a setting read from a file is read at every load.
    pub settings: Vec<PolicySetting>,
    pub limits: SandboxLimits,
    /// Calls of this site's policy that may run at once.
    pub policy_workers: usize,
}

/// Every site's spec, as the configuration gives it: the one place the
/// inheritance is written, used by the server ([`super::App::from_config`])
/// and by `sluice check` alike.
#[derive(Debug, Clone)]
pub struct SiteSpecs {
    /// The top-level keys (its root is empty if none is given: `check`
    /// needs none).
    pub default: SiteSpec,
    /// Each `[[vhost]]` by its host (lower-case): its own keys, the
    /// top-level `[sandbox]` limits for those it does not set.
    pub vhosts: Vec<(String, SiteSpec)>,
}

impl SiteSpecs {
    pub fn from_config(config: &Config) -> SiteSpecs {
        let limits = config.sandbox.limits();
        let default = SiteSpec {
            root: config.root.clone().unwrap_or_default(),
            policy_file: config.policy_file.clone(),
            settings: policy_settings(&config.policy, config.dir.as_deref()),
            limits,
            policy_workers: config.policy_workers(None),
        };
        let vhosts = config
            .vhost
            .iter()
            .map(|v| {
                let deadline_ms = v.deadline_ms.unwrap_or(config.sandbox.deadline_ms);
                let spec = SiteSpec {
                    root: v.root.clone(),
                    policy_file: v.policy_file.clone(),
                    settings: policy_settings(&v.policy, config.dir.as_deref()),
                    limits: SandboxLimits {
                        deadline: Duration::from_millis(deadline_ms),
                        wall: wall_ceiling(
                            v.wall_ms.unwrap_or(config.sandbox.wall_ms),
                            deadline_ms,
                        ),
                        warmup: v.warmup_ms.map_or(limits.warmup, Duration::from_millis),
                        memory: v.memory.map_or(limits.memory, |m| m.0),
                    },
                    policy_workers: config.policy_workers(v.policy_workers),
                };
                (v.host.to_ascii_lowercase(), spec)
            })
            .collect();
        SiteSpecs { default, vhosts }
    }
}

/// Why a site could not be opened: its root, or its policy.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Policy(#[from] Arc<LoadError>),
}

impl SiteSpec {
    /// Compiles, configures and canary-tests this site's policy, or shares
    /// the one `loader` already made from the same bytes, settings and
    /// limits; the site calls it on instances of its own.
    /// Settings read from files are read here, at every load and reload:
    /// their contents are part of the settings the policy is shared by.
    fn load_policy(&self, loader: &mut Loader<'_>) -> Result<Policy, Arc<LoadError>> {
        let settings =
            read_settings(&self.settings).map_err(|e| Arc::new(LoadError::SettingFile(e)))?;
        loader
            .load(self.policy_file.as_deref(), &settings, self.limits)
            .map(Policy::new)
    }
}

/// A loaded policy with the caches that depend on it: lookups follow its
/// capabilities (index names, siblings) and decisions are its own, so both
/// are replaced with it on reload. What the policy shares with other sites
/// is immutable (see `policy::Loader`); its instances and the caches are
/// this site's, and take no memory until its first request.
pub struct Loaded {
    pub policy: Policy,
    pub(crate) decisions: Option<DecisionCache>,
    files: Option<FileCache>,
}

impl Loaded {
    fn new(policy: Policy, cache: &CacheConfig, stores: &Stores) -> Loaded {
        let decisions = if policy.capabilities().reusable {
            DecisionCache::new(&stores.decisions, cache.decisions.0)
        } else {
            None
        };
        Loaded {
            decisions,
            files: FileCache::new(&stores.open_files, cache),
            policy,
        }
    }

    /// Looks up a normalized path for this policy, through the open-file
    /// cache when it is on; fails only for want of a descriptor.
    pub fn lookup(&self, root: &Root, relative: &str) -> Result<Found, NoDescriptors> {
        let caps = self.policy.capabilities();
        match &self.files {
            Some(cache) => cache.lookup(root, relative, &caps.index_names, &caps.siblings),
            None => root.lookup(relative, &caps.index_names, &caps.siblings),
        }
    }
}

/// The host-wide caches every site has a share of: one bound for all
/// tenants, whatever their number (see `shared_cache`).
#[derive(Clone)]
pub struct Stores {
    /// Reusable decisions, weighed in bytes (`[cache] decisions-total`).
    pub decisions: Decisions,
    /// Open files, weighed in descriptors (`[cache] descriptors`).
    pub open_files: OpenFiles,
}

impl Stores {
    /// The stores for `cache`, the open-file one sized from the descriptor
    /// limit now in force (as `sluice serve` sizes its connection cap).
    pub fn new(cache: &CacheConfig) -> Stores {
        let descriptors =
            crate::descriptors::cache_budget(cache.descriptors, crate::descriptors::limit());
        Stores {
            decisions: reuse::decisions(cache.decisions_total.0),
            open_files: resolve::open_files(descriptors),
        }
    }

    /// What they hold now, for `/stats` and `/metrics`.
    pub fn usage(&self) -> stats::CacheUsage {
        stats::CacheUsage {
            decision_bytes: self.decisions.weight(),
            decision_bytes_limit: self.decisions.bound(),
            decision_entries: self.decisions.len(),
            open_file_descriptors: self.open_files.weight(),
            open_file_descriptors_limit: self.open_files.bound(),
        }
    }
}

/// The default site's name in metrics and the access log.
pub const DEFAULT_SITE: &str = "(default)";

/// One served root with its policy.
pub struct Site {
    /// Shared with a listing read on the blocking pool
    /// (`handler::listing`), which may outlive its request.
    pub root: Arc<Root>,
    loaded: ArcSwap<Loaded>,
    /// Turns to call this site's policy: a tenant's calls can occupy at most
    /// this many workers, whatever its load (see `handler::verdict`).
    pub(crate) calls: tokio::sync::Semaphore,
    /// Responses by status class, for `/metrics`.
    pub counters: stats::SiteCounters,
    /// `(default)` or the `[[vhost]]` host, for the access log.
    name: Arc<str>,
    spec: SiteSpec,
    cache: CacheConfig,
    stores: Stores,
}

impl Site {
    /// Opens the root and loads the policy (compile, configure, canary).
    pub fn open(
        loader: &mut Loader<'_>,
        name: &str,
        spec: SiteSpec,
        cache: CacheConfig,
        stores: &Stores,
    ) -> Result<Site, SiteError> {
        let root = Arc::new(Root::open(&spec.root)?);
        let policy = spec.load_policy(loader)?;
        Ok(Site {
            root,
            loaded: ArcSwap::from_pointee(Loaded::new(policy, &cache, stores)),
            calls: tokio::sync::Semaphore::new(spec.policy_workers.max(1)),
            counters: stats::SiteCounters::default(),
            name: name.into(),
            spec,
            cache,
            stores: stores.clone(),
        })
    }

    /// `(default)` or the `[[vhost]]` host.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The current policy and its caches. In-flight requests keep the ones
    /// they started with.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    /// Loads the policy file again; swaps it in only if it compiles, links,
    /// configures and passes the canary call. Otherwise the old one stays.
    pub fn reload(&self, loader: &mut Loader<'_>) -> Result<(), Arc<LoadError>> {
        match self.spec.load_policy(loader) {
            Ok(p) => {
                self.loaded
                    .store(Arc::new(Loaded::new(p, &self.cache, &self.stores)));
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
