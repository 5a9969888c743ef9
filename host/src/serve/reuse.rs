//! Reusable decisions: a bounded cache of validated decisions per loaded
//! policy, for policies that declare their decisions a pure function of
//! their inputs (`capabilities.reusable`).
//!
//! The key is [`super::request::write_key`]'s encoding of exactly what the
//! policy would be given, file metadata included: a changed file, a new
//! sibling, another declared header value are all new keys by construction,
//! and nothing the policy is not given can make two requests share a key
//! wrongly. What is cached is the [`Verdict`] (the decision after
//! validation), so a hit skips the wasm call *and* the validation; it is bound
//! to the request's own descriptors before use. The cache belongs to one
//! loaded policy and is dropped with it on reload.

use std::sync::{Arc, OnceLock};

use quick_cache::Weighter;

use crate::decision::Verdict;

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<[u8]>, Arc<Verdict>> for ByBytes {
    fn weight(&self, key: &Box<[u8]>, verdict: &Arc<Verdict>) -> u64 {
        (key.len() + verdict.weight()) as u64
    }
}

type Entries = quick_cache::sync::Cache<Box<[u8]>, Arc<Verdict>, ByBytes>;

/// Validated decisions of one policy, by the exact inputs that produced them.
pub struct DecisionCache {
    bytes: u64,
    /// Made on the first insert: quick_cache sizes its tables up front (for
    /// the default 4 MiB, thousands of slots), and a site nobody visits —
    /// one of thousands of tenants — should not pay for them.
    entries: OnceLock<Entries>,
}

impl DecisionCache {
    /// A cache holding about `bytes` of keys and verdicts; `None` for 0.
    pub fn new(bytes: u64) -> Option<DecisionCache> {
        (bytes > 0).then(|| DecisionCache {
            bytes,
            entries: OnceLock::new(),
        })
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<Verdict>> {
        self.entries.get()?.get(key)
    }

    pub fn insert(&self, key: Box<[u8]>, verdict: Arc<Verdict>) {
        let entries = self.entries.get_or_init(|| {
            // quick_cache sizes its tables from an item estimate; a verdict
            // with its key is a few hundred bytes.
            quick_cache::sync::Cache::with_weighter(
                usize::try_from(self.bytes / 512)
                    .unwrap_or(usize::MAX)
                    .max(16),
                self.bytes,
                ByBytes,
            )
        });
        entries.insert(key, verdict);
    }

    /// Bytes held (keys and verdicts).
    pub fn weight(&self) -> u64 {
        self.entries.get().map_or(0, |e| e.weight())
    }
}
