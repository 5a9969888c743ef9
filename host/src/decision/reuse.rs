//! Reusable decisions: validated decisions of policies that declare them a
//! pure function of their inputs (`capabilities.reusable`), kept in one
//! host-wide cache ([`crate::shared_cache`]) in which each site's loaded
//! policy has a share.
//!
//! The key is `handler::request::write_key`'s encoding of exactly what the
//! policy would be given, file metadata included: a changed file, a new
//! sibling, another declared header value are all new keys by construction,
//! and nothing the policy is not given can make two requests share a key
//! wrongly. The shared cache adds the owner (this site's policy generation)
//! to every key, so no site's decision answers another's request. What is
//! cached is the [`Verdict`] (the decision after validation), so a hit skips
//! the wasm call *and* the validation; it is bound to the request's own
//! descriptors before use. A site's share goes with its policy on reload.
//!
//! Rewrites. Each hop of a rewrite chain is its own call with its own key
//! (the key holds the `hop`: original path, count and reason), so each
//! hop's outcome is kept under it: a rewrite as the checked rewrite
//! ([`Reused::Rewrite`]), the final answer as its verdict. A chain answered
//! from the cache is followed hop by hop, each hop's path resolved afresh
//! and looked up with its own inputs: it is exactly the chain the policy
//! would decide today.
//!
//! Bounds: a site's decisions weigh at most `[cache] decisions` bytes, all
//! sites' together at most `[cache] decisions-total`. The weight is what an
//! entry really costs the heap: the key, the verdict's header map as laid
//! out and each buffer it points to, allocator rounding, the `Arc`, and the
//! shared cache's own slots (see [`Verdict::heap_bytes`] and
//! [`SharedCache::entry_bytes`]; a unit test checks the sum against a
//! counting allocator).

use crate::decision::Verdict;
use crate::resolve::NormalPath;
use crate::shared_cache::{heap, Held, Quota, Share, SharedCache};

/// One hop's reusable outcome.
pub enum Reused {
    /// The response, validated.
    Respond(Verdict),
    /// Decide again for `path` (checked: normalized, beneath the root once
    /// resolved), with the policy's `reason`.
    Rewrite { path: NormalPath, reason: Box<str> },
}

impl Reused {
    fn compacted(self) -> Reused {
        match self {
            Reused::Respond(v) => Reused::Respond(v.compacted()),
            Reused::Rewrite { mut path, reason } => {
                path.path.shrink_to_fit();
                Reused::Rewrite { path, reason }
            }
        }
    }

    /// The heap bytes it holds (see [`Verdict::heap_bytes`]).
    fn heap_bytes(&self) -> u64 {
        match self {
            Reused::Respond(v) => v.heap_bytes(),
            Reused::Rewrite { path, reason } => {
                let text = |n: usize| if n == 0 { 0 } else { heap(n) };
                text(path.path.capacity()) + text(reason.len())
            }
        }
    }
}

/// The host-wide store of every site's decisions.
pub type Decisions = SharedCache<Reused>;

/// A typical entry (a key of a hundred bytes or so and a verdict with half
/// a dozen headers), for sizing the shared cache's tables.
const TYPICAL_ENTRY: u64 = 1 << 10;

/// The host-wide decision store bounded to `bytes`.
pub fn decisions(bytes: u64) -> Decisions {
    SharedCache::new(bytes, TYPICAL_ENTRY, true)
}

/// One site's (one loaded policy's) validated decisions, by the exact inputs
/// that produced them.
pub struct DecisionCache {
    share: Share<Reused>,
}

impl DecisionCache {
    /// A share of `store` holding at most `bytes`; `None` for 0.
    pub fn new(store: &Decisions, bytes: u64) -> Option<DecisionCache> {
        (bytes > 0 && store.bound() > 0).then(|| DecisionCache {
            share: store.share(Quota {
                weight: bytes,
                items: u64::MAX,
            }),
        })
    }

    /// The hash of `key`, for [`DecisionCache::get`] and
    /// [`DecisionCache::insert`].
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.share.hash(key)
    }

    pub fn get(&self, key: &[u8], hash: u64) -> Option<Held<Reused>> {
        self.share.get(key, hash)
    }

    /// Keeps `outcome` for `key` and returns it.
    pub fn insert(&self, key: Box<[u8]>, hash: u64, outcome: Reused) -> Held<Reused> {
        let outcome = outcome.compacted();
        let weight = outcome.heap_bytes() + Decisions::entry_bytes(key.len());
        self.share.insert(key, hash, outcome, weight)
    }

    /// Bytes this site's decisions weigh.
    pub fn weight(&self) -> u64 {
        self.share.weight()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::TransferConfig;
    use crate::contract::{wit, Transport};
    use crate::counting_alloc::live;
    use crate::decision;
    use crate::resolve::{FileMeta, Found, FoundFile, OpenedFile};

    fn found() -> Found {
        let opened = |size| OpenedFile {
            file: Arc::new(tempfile::tempfile().unwrap()),
            meta: FileMeta {
                size,
                mtime_ns: 1,
                inode: 2,
                device: 3,
            },
        };
        Found::File(FoundFile {
            file: opened(10_000),
            siblings: vec![(crate::coding::Coding::Gzip, opened(4_000))],
        })
    }

    fn h(name: &str, value: &str) -> wit::Header {
        wit::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// What the default policy answers for a file (a 200 with six headers).
    fn typical() -> wit::Decision {
        wit::Decision {
            status: 200,
            headers: vec![
                h("content-type", "text/html; charset=utf-8"),
                h("etag", "\"2710-17d3f1a2b3c4d5e6\""),
                h("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
                h("cache-control", "no-cache"),
                h("accept-ranges", "bytes"),
                h("vary", "accept-encoding"),
            ],
            body: wit::Body::Full(wit::FullBody {
                source: wit::Source::Original,
                compress: None,
            }),
        }
    }

    /// Decisions of every shape: standard, custom and repeated names, empty
    /// values, inline bodies, ranges, as many headers as allowed.
    fn shapes() -> Vec<(&'static str, wit::Decision)> {
        let many = (0..crate::contract::MAX_HEADERS)
            .map(|i| h(&format!("x-h{i}"), &"v".repeat(i)))
            .collect();
        vec![
            ("typical", typical()),
            (
                "304",
                wit::Decision {
                    status: 304,
                    headers: vec![h("etag", "\"abc\""), h("cache-control", "no-cache")],
                    body: wit::Body::Empty,
                },
            ),
            (
                "no headers",
                wit::Decision {
                    status: 204,
                    headers: vec![],
                    body: wit::Body::Empty,
                },
            ),
            (
                "custom, repeated and empty",
                wit::Decision {
                    status: 200,
                    headers: vec![
                        h("x-tenant", "a"),
                        h("link", "</a.css>; rel=preload"),
                        h("x-tenant", "b"),
                        h("link", "</b.js>; rel=preload"),
                        h("x-empty", ""),
                        h("x-long", &"z".repeat(3000)),
                    ],
                    body: wit::Body::Full(wit::FullBody {
                        source: wit::Source::Sibling(wit::ContentCoding::Gzip),
                        compress: None,
                    }),
                },
            ),
            (
                "ranges",
                wit::Decision {
                    status: 206,
                    headers: vec![h("content-type", "video/mp4")],
                    body: wit::Body::Ranges(wit::RangedBody {
                        source: wit::Source::Original,
                        ranges: (0..10)
                            .map(|i| wit::ByteRange {
                                first: i * 100,
                                last: i * 100 + 10,
                            })
                            .collect(),
                    }),
                },
            ),
            (
                "inline",
                wit::Decision {
                    status: 404,
                    headers: vec![h("content-type", "text/html")],
                    body: wit::Body::Inline(vec![b'x'; 5000]),
                },
            ),
            (
                "most headers",
                wit::Decision {
                    status: 200,
                    headers: many,
                    body: wit::Body::Empty,
                },
            ),
        ]
    }

    const TRANSPORT: Transport = Transport {
        chunk_size: 0,
        zero_copy: true,
    };

    /// Heap bytes `f` leaves allocated (this thread's, counted as glibc's
    /// malloc takes them).
    fn retained<R>(f: impl FnOnce() -> R) -> (R, i64) {
        let before = live();
        let r = f();
        (r, live() - before)
    }

    /// An entry's weight is what it costs the heap: measured, for decisions
    /// of every shape, with a counting allocator. (The shared cache's own
    /// slots are not one allocation per entry: the next test measures them.)
    #[test]
    fn an_entry_weighs_what_it_costs_the_heap() {
        let found = found();
        let limits = TransferConfig::default();
        let store = decisions(64 << 20);
        // A quota of one byte: every entry is made, weighed and handed back
        // without being kept, so nothing but the entry is allocated.
        let cache = DecisionCache::new(&store, 1).unwrap();
        for (name, d) in shapes() {
            let key: Box<[u8]> = vec![b'k'; 150].into();
            let key_bytes = crate::shared_cache::heap(key.len()) as i64;
            let hash = cache.hash(&key);
            // The decision as lifted from the guest, and the key, exist
            // before; validating and inserting free them: count them back.
            let (d, lifted) = retained(|| d.clone());
            let (held, grown) = retained(|| {
                let verdict = decision::validate(d, TRANSPORT, &found, &limits).unwrap();
                cache.insert(key, hash, Reused::Respond(verdict))
            });
            let cost = grown + lifted + key_bytes;
            let counted = store.weight() as i64 - key_bytes - Decisions::SLOT_BYTES as i64;
            // glibc hands out a free chunk up to 16 bytes larger than asked
            // rather than split off a remainder too small to use: a few such
            // per entry at most.
            assert!(
                (counted..=counted + counted / 100 + 48).contains(&cost),
                "{name}: the verdict and its Arc cost {cost} bytes; the weight counts {counted}"
            );
            // A hit clones the header map and body: that allocates only the
            // clone's own storage, which goes with the response.
            let Reused::Respond(verdict) = &*held else {
                unreachable!()
            };
            let (_, hit) = retained(|| drop(verdict.plan(&found)));
            assert_eq!(hit, 0, "{name}");
            drop(held);
            assert_eq!(store.weight(), 0);
        }
        // A rewrite: its path and reason, as checked from the guest's.
        for (path, reason) in [("/index.html", ""), ("/a/b/404.html", "error-page 404")] {
            let key: Box<[u8]> = vec![b'k'; 150].into();
            let key_bytes = crate::shared_cache::heap(key.len()) as i64;
            let hash = cache.hash(&key);
            let (rewrite, lifted) = retained(|| wit::Rewrite {
                path: path.into(),
                reason: reason.into(),
            });
            let (held, grown) = retained(|| {
                let path = decision::check_rewrite(&rewrite).unwrap();
                let reason = rewrite.reason.into_boxed_str();
                cache.insert(key, hash, Reused::Rewrite { path, reason })
            });
            let cost = grown + lifted + key_bytes;
            let counted = store.weight() as i64 - key_bytes - Decisions::SLOT_BYTES as i64;
            assert!(
                (counted..=counted + 48).contains(&cost),
                "rewrite to {path}: costs {cost} bytes; the weight counts {counted}"
            );
            drop(held);
            assert_eq!(store.weight(), 0);
        }
    }

    /// The whole cache, its tables, ghost list and rings included, filled
    /// several times over with new keys (every request a new
    /// `If-None-Match`): what stays allocated is the configured bound, within
    /// 10 %, however many sites share it.
    #[test]
    fn the_cache_costs_its_bound_under_new_keys() {
        let found = found();
        let limits = TransferConfig::default();
        let bound: u64 = 4 << 20;
        for sites in [1, 8, 64] {
            let (store, grown) = retained(|| {
                let store = decisions(bound);
                // Per-site quotas adding up to four times the bound (one
                // site: the whole bound).
                let quota = if sites == 1 { bound } else { bound * 4 / sites };
                let caches: Vec<_> = (0..sites)
                    .map(|_| DecisionCache::new(&store, quota).unwrap())
                    .collect();
                let per_entry = 1000; // about, so 3x over is:
                for i in 0..3 * bound / per_entry {
                    let cache = &caches[(i % sites) as usize];
                    let mut key = vec![b'k'; 100];
                    key.extend_from_slice(format!("if-none-match: \"{i}\"").as_bytes());
                    let key: Box<[u8]> = key.into();
                    let hash = cache.hash(&key);
                    let verdict =
                        decision::validate(typical(), TRANSPORT, &found, &limits).unwrap();
                    cache.insert(key, hash, Reused::Respond(verdict));
                }
                assert!(store.weight() <= bound, "{sites} sites: {}", store.weight());
                (store, caches)
            });
            let (store, caches) = store;
            let ratio = grown as f64 / bound as f64;
            eprintln!(
                "{sites} sites: {grown} bytes allocated for a {bound}-byte bound ({ratio:.3}); \
                 weights {}",
                store.weight()
            );
            assert!(
                (0.85..=1.10).contains(&ratio),
                "{sites} sites: {grown} bytes for a bound of {bound} ({ratio:.3})"
            );
            drop(caches);
            assert_eq!(store.weight(), 0);
        }
    }
}
