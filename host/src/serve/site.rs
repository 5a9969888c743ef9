//! Sites (virtual hosts): a root and a policy each, chosen by `Host`, and
//! the application they make up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;

use super::reuse::{self, DecisionCache, Decisions};
use crate::access_log::AccessLog;
use crate::config::{
    policy_settings, wall_ceiling, CacheConfig, Config, SandboxLimits, TransferConfig,
};
use crate::policy::{self, wit, LoadError, Loader, Policy, Sandbox};
use crate::resolve::{self, FileCache, Found, NoDescriptors, OpenFiles, Root};
use crate::stats;
use crate::transfer::budget::BodyBudget;

/// Where a site's policy comes from, kept for reloads.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub root: PathBuf,
    pub policy_file: Option<PathBuf>,
    pub settings: Vec<wit::Setting>,
    pub limits: SandboxLimits,
    /// Calls of this site's policy that may run at once.
    pub policy_workers: usize,
}

impl SiteSpec {
    /// Compiles, configures and canary-tests this site's policy, or shares
    /// the one `loader` already made from the same bytes, settings and
    /// limits; the site calls it on instances of its own.
    fn load_policy(&self, loader: &mut Loader<'_>) -> Result<Policy, Arc<LoadError>> {
        loader
            .load(self.policy_file.as_deref(), &self.settings, self.limits)
            .map(Policy::new)
    }
}

/// How long an idle instance is kept without a call before it is dropped
/// (its site's next request then makes a fresh one: well under a
/// millisecond for a typical policy, see BENCHMARKS.md).
const RECLAIM_AFTER: Duration = Duration::from_secs(10);

/// A loaded policy with the caches that depend on it: lookups follow its
/// capabilities (index names, siblings) and decisions are its own, so both
/// are replaced with it on reload. What the policy shares with other sites
/// is immutable (see `policy::Loader`); its instances and the caches are
/// this site's, and take no memory until its first request.
pub struct Loaded {
    pub policy: Policy,
    pub(super) decisions: Option<DecisionCache>,
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
    pub root: Root,
    loaded: ArcSwap<Loaded>,
    /// Turns to call this site's policy: a tenant's calls can occupy at most
    /// this many workers, whatever its load (see `serve::verdict`).
    pub(super) calls: tokio::sync::Semaphore,
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
        spec: SiteSpec,
        cache: CacheConfig,
        stores: &Stores,
    ) -> anyhow::Result<Site> {
        let root = Root::open(&spec.root)?;
        let policy = spec.load_policy(loader)?;
        Ok(Site {
            root,
            loaded: ArcSwap::from_pointee(Loaded::new(policy, &cache, stores)),
            calls: tokio::sync::Semaphore::new(spec.policy_workers.max(1)),
            counters: stats::SiteCounters::default(),
            name: DEFAULT_SITE.into(),
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
}

impl App {
    /// Builds the application from a configuration: the sandbox sized for
    /// every site, then each site's root and policy (compiled, configured and
    /// canary-tested).
    pub fn from_config(config: &Config) -> anyhow::Result<Arc<App>> {
        let limits = config.sandbox.limits();
        let root = config
            .root
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no root directory given"))?;
        let default = SiteSpec {
            root,
            policy_file: config.policy_file.clone(),
            settings: policy_settings(&config.policy),
            limits,
            policy_workers: config.policy_workers(None),
        };
        let vhosts: Vec<(String, SiteSpec)> = config
            .vhost
            .iter()
            .map(|v| {
                let spec = SiteSpec {
                    root: v.root.clone(),
                    policy_file: v.policy_file.clone(),
                    settings: policy_settings(&v.policy),
                    limits: {
                        let deadline_ms = v.deadline_ms.unwrap_or(config.sandbox.deadline_ms);
                        SandboxLimits {
                            deadline: Duration::from_millis(deadline_ms),
                            wall: wall_ceiling(
                                v.wall_ms.unwrap_or(config.sandbox.wall_ms),
                                deadline_ms,
                            ),
                            warmup: v.warmup_ms.map_or(limits.warmup, Duration::from_millis),
                            memory: v.memory.map_or(limits.memory, |m| m.0),
                        }
                    },
                    policy_workers: config.policy_workers(v.policy_workers),
                };
                (v.host.to_ascii_lowercase(), spec)
            })
            .collect();

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
        let mut sandbox =
            Sandbox::new(&pool).map_err(|e| anyhow::anyhow!("cannot set up wasmtime: {e:#}"))?;
        match config.compile_cache_dir() {
            None => {}
            Some((dir, explicit)) => match sandbox.set_compile_cache(&dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "compiled-policy cache"),
                Err(e) if explicit => return Err(e.into()),
                // The default location is a convenience; without it every
                // start compiles, as it would with the cache off.
                Err(e) => tracing::warn!(error = %e, "compiled-policy cache off"),
            },
        }

        let stores = Stores::new(&config.cache);
        let mut loader = Loader::new(&sandbox);
        let default = Site::open(&mut loader, default, config.cache, &stores)?;
        let mut sites = HashMap::new();
        for (host, spec) in vhosts {
            let mut site = Site::open(&mut loader, spec, config.cache, &stores)
                .map_err(|e| anyhow::anyhow!("vhost {host}: {e:#}"))?;
            site.name = host.as_str().into();
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
        }))
    }

    /// The site for a request's host (`Host` header, or the URI authority),
    /// falling back to the default site.
    pub fn site_for<B>(&self, req: &Request<B>) -> &Site {
        if self.vhosts.is_empty() {
            return &self.default;
        }
        request_host(req)
            .and_then(|h| self.vhosts.get(&h))
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

/// The host name a request is for, as virtual hosts are matched: the URI
/// authority (HTTP/2 `:authority`) or the `Host` header, without port or
/// trailing dot, lower-case.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .host()
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map(|h| strip_port(h).trim_end_matches('.').to_ascii_lowercase())
}

/// The host of a `Host` value (RFC 9110 §7.2: `uri-host [":" port]`), IPv6
/// brackets removed. A value that is not one comes back unchanged, so it
/// matches no virtual host.
fn strip_port(host: &str) -> &str {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return host;
    };
    // `Authority` also takes userinfo (`user@`) and a non-numeric port,
    // which a Host value cannot have.
    let name = authority.host();
    let port_ok = host.strip_prefix(name).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    });
    if !port_ok {
        return host;
    }
    let name = &host[..name.len()];
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn strip_port_names_and_ports() {
        for (host, want) in [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("EXAMPLE.com:80", "EXAMPLE.com"),
            // RFC 9110 §7.2: port = *DIGIT, so an empty port is still a port.
            ("example.com:", "example.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("localhost:99999", "localhost"),
        ] {
            assert_eq!(strip_port(host), want, "{host:?}");
        }
    }

    #[test]
    fn strip_port_ipv6_literals_lose_their_brackets() {
        for (host, want) in [
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[fe80::1%25eth0]:80", "fe80::1%25eth0"),
        ] {
            assert_eq!(strip_port(host), want, "{host:?}");
        }
    }

    /// Trailing dots are kept here; the caller trims them after the port is gone.
    #[test]
    fn strip_port_keeps_trailing_dots() {
        assert_eq!(strip_port("example.com."), "example.com.");
        assert_eq!(strip_port("example.com.:8080"), "example.com.");
        assert_eq!(strip_port("example.com..:1"), "example.com..");
    }

    /// Values that are not `uri-host [":" port]` come back unchanged, so they
    /// match no virtual host and the default site answers.
    #[test]
    fn strip_port_leaves_garbage_alone() {
        for host in [
            "",
            "[::1",
            "example.com:http",
            "example.com:80x",
            "user@example.com",
            "example.com/path",
            // Not host[:port] either; before http::uri::Authority these lost
            // their last `:...` ("::1" became ":", "a:1:2" became "a:1"), or
            // everything after a `]`, or kept characters no host name has.
            "::1",
            "a:1:2",
            "example.com:80:90",
            "[::1]junk",
            "[::1]:80:90",
            "user:pw@example.com:80",
            "exa mple.com:80",
            "example.com%41",
        ] {
            assert_eq!(strip_port(host), host, "{host:?}");
        }
    }
}
