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

use std::sync::Arc;

use quick_cache::Weighter;

use crate::decision::Verdict;

#[derive(Clone)]
struct ByBytes;

impl Weighter<Box<[u8]>, Arc<Verdict>> for ByBytes {
    fn weight(&self, key: &Box<[u8]>, verdict: &Arc<Verdict>) -> u64 {
        (key.len() + verdict.weight()) as u64
    }
}

/// Validated decisions of one policy, by the exact inputs that produced them.
pub struct DecisionCache {
    entries: quick_cache::sync::Cache<Box<[u8]>, Arc<Verdict>, ByBytes>,
}

impl DecisionCache {
    /// A cache holding about `bytes` of keys and verdicts; `None` for 0.
    pub fn new(bytes: u64) -> Option<DecisionCache> {
        (bytes > 0).then(|| DecisionCache {
            // quick_cache sizes its tables from an item estimate; a verdict
            // with its key is a few hundred bytes.
            entries: quick_cache::sync::Cache::with_weighter(
                usize::try_from(bytes / 512).unwrap_or(usize::MAX).max(16),
                bytes,
                ByBytes,
            ),
        })
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<Verdict>> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: Box<[u8]>, verdict: Arc<Verdict>) {
        self.entries.insert(key, verdict);
    }

    /// Bytes held (keys and verdicts).
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}
