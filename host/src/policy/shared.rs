//! Loading the policies of many sites at once, each distinct one once.
//!
//! Thousands of tenants typically share a few policy components, most with
//! the same settings. A [`Loader`] reads each policy file once, and loads
//! (configure + canary) each distinct *(component bytes, settings, limits)*
//! once; sites with the same triple share one [`Prepared`] policy: the
//! compiled code, and what `configure` and the canary established (the
//! capabilities). That is sound because all of it is immutable and a
//! function of the triple: `configure` gets only the settings (and the
//! host's limits, the same for all), and the WIT requires a policy to be a
//! function of its settings (the host refuses one whose `configure` answers
//! differently on a new instance).
//!
//! Instances are never shared. An instance's memory holds whatever its
//! calls wrote — a policy may keep state between calls however the contract
//! discourages it, and a 0.1.0 policy is given every request header,
//! cookies included — so each site calls its policy on instances of its own
//! ([`super::Policy`]), and one tenant's requests can never run on an
//! instance another tenant's requests wrote to. (When sites shared
//! instances, outside testing saw tenant B's responses carry tenant A's
//! request paths 10,518 times: `sandbox::tenants_never_share_an_instance`.)
//!
//! Also per site: its root, its open-file and decision caches (decisions
//! depend on the file found under that root), its counters and its share of
//! the workers (`policy-workers`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compiled::{key, Key};
use super::{wit, LoadError, Prepared, Sandbox, DEFAULT_POLICY};
use crate::config::SandboxLimits;
use crate::stats;

/// A file's bytes and their key, read once per load.
type File = Result<(Key, Arc<[u8]>), Arc<LoadError>>;

/// A loaded policy, or why it could not be (shared by every site asking).
type Outcome = Result<Arc<Prepared>, Arc<LoadError>>;

/// Loads policies for many sites, sharing what is identical. Keep one for a
/// start-up or a reload, then drop it: a reload must read files again.
pub struct Loader<'a> {
    sandbox: &'a Sandbox,
    files: HashMap<Option<PathBuf>, File>,
    /// By component, settings (their `Debug` form: the generated WIT types
    /// are neither `Eq` nor `Hash`, and the form is complete and
    /// deterministic) and limits. Failures are kept too: ten thousand sites
    /// sharing a broken policy should not load it ten thousand times.
    policies: HashMap<(Key, String, SandboxLimits), Outcome>,
}

impl<'a> Loader<'a> {
    pub fn new(sandbox: &'a Sandbox) -> Loader<'a> {
        Loader {
            sandbox,
            files: HashMap::new(),
            policies: HashMap::new(),
        }
    }

    /// The policy of `file` (`None`: the built-in default) with these
    /// settings and limits: loaded (compile, configure, canary) if no site
    /// loaded the same before, else shared.
    pub fn load(
        &mut self,
        file: Option<&Path>,
        settings: &[wit::Setting],
        limits: SandboxLimits,
    ) -> Outcome {
        let (key, bytes) = self
            .files
            .entry(file.map(Path::to_owned))
            .or_insert_with(|| read(file))
            .clone()?;
        let sandbox = self.sandbox;
        let id = (key, format!("{settings:?}"), limits);
        if let Some(done) = self.policies.get(&id) {
            if done.is_ok() {
                stats::add(&stats::get().policies_shared, 1);
            }
            return done.clone();
        }
        let name = file.map_or_else(
            || "built-in default".to_owned(),
            |p| p.display().to_string(),
        );
        let loaded = Prepared::from_bytes(sandbox, &bytes, &name, settings, limits)
            .map(Arc::new)
            .map_err(Arc::new);
        self.policies.insert(id, loaded.clone());
        loaded
    }
}

fn read(file: Option<&Path>) -> File {
    let bytes: Arc<[u8]> = match file {
        None => DEFAULT_POLICY.into(),
        Some(path) => std::fs::read(path)
            .map_err(|source| {
                Arc::new(LoadError::Read {
                    path: path.display().to_string(),
                    source,
                })
            })?
            .into(),
    };
    Ok((key(&bytes), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn setting(name: &str, value: u64) -> wit::Setting {
        wit::Setting {
            name: name.into(),
            value: wit::SettingValue::Integer(value as i64),
        }
    }

    #[test]
    fn identical_policies_are_shared_and_others_are_not() {
        let config = SandboxConfig::default();
        let sandbox = Sandbox::new(&config).unwrap();
        let limits = config.limits();
        let mut loader = Loader::new(&sandbox);
        let a = loader
            .load(None, &[setting("max-ranges", 4)], limits)
            .unwrap();
        let b = loader
            .load(None, &[setting("max-ranges", 4)], limits)
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same bytes, settings and limits");
        let c = loader
            .load(None, &[setting("max-ranges", 5)], limits)
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "other settings: another policy");
        assert!(
            Arc::ptr_eq(&a.compiled, &c.compiled),
            "but the same compiled component"
        );
        let mut tighter = limits;
        tighter.memory /= 2;
        let d = loader
            .load(None, &[setting("max-ranges", 4)], tighter)
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &d), "other limits: another policy");

        // A new loader (a reload) configures again but compiles nothing.
        let e = Loader::new(&sandbox)
            .load(None, &[setting("max-ranges", 4)], limits)
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &e));
        assert!(Arc::ptr_eq(&a.compiled, &e.compiled));
    }

    #[test]
    fn a_missing_file_is_named() {
        let config = SandboxConfig::default();
        let sandbox = Sandbox::new(&config).unwrap();
        let mut loader = Loader::new(&sandbox);
        let e = loader
            .load(Some(Path::new("/nonexistent/p.wasm")), &[], config.limits())
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/p.wasm"), "{e}");
    }
}
