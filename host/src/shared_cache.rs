//! One cache for the whole host, with a share per owner: the store behind the
//! decision cache (`decision::reuse`, weighed in bytes) and the open-file cache
//! (`resolve::cache`, weighed in descriptors).
//!
//! Why one cache and not one per site: a per-site bound multiplies. Sixty-four
//! tenants with a 4 MiB decision cache each may hold 256 MiB, ten thousand
//! may hold 40 GiB, and each per-site cache also pays its own tables. Here
//! every site's entries live in one [`quick_cache`] (S3-FIFO) whose capacity
//! is the host-wide bound, whatever the number of sites:
//!
//! * **Keys never cross owners.** An owner is one site's loaded policy (a
//!   generation: a reload makes a new owner); every key carries its owner's
//!   number, never reused, and equality compares it with the key's bytes, so
//!   one site's entry can never answer another's lookup.
//! * **Across owners: S3-FIFO.** A new entry goes to the small (cold) queue
//!   and is promoted only when it is used again; entries used once leave
//!   first. A tenant that makes a new key per request (the attack that made
//!   per-site caches cost 14 MiB each) churns the cold queue and cannot push
//!   out other tenants' hot entries.
//! * **Per owner: a quota.** A tenant whose keys are *also* hot could still
//!   take the whole cache, so each owner may hold at most its quota (weight
//!   and items: `[cache] decisions` bytes, `open-files` paths). Past it, the
//!   owner evicts its own entries, oldest first with a second chance for
//!   those used since (CLOCK), from a ring of its keys' hashes. A noisy tenant
//!   pays with its own entries, never with anyone else's.
//! * **Exact weights.** Each entry's weight is counted when it is made and
//!   given back when its last reference drops ([`Slot`]'s `Drop`), so the
//!   totals shown in `/metrics` are what is really held, in-flight requests
//!   included.
//!
//! When an owner goes (a reload, a site removed) its entries are removed at
//! once rather than left to age out.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use quick_cache::{DefaultHashBuilder, Equivalent, Weighter};

/// What one owner may hold: a weight and a number of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub weight: u64,
    pub items: u64,
}

/// A host-wide cache of `V`, bounded in weight, shared by owners
/// ([`Share`]s). Cloning makes another handle to the same cache.
pub struct SharedCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for SharedCache<V> {
    fn clone(&self) -> Self {
        SharedCache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<V> {
    /// The weight quick_cache may hold: the bound less the fixed cost of its
    /// tables (see [`SharedCache::new`]).
    capacity: u64,
    /// The bound as configured.
    bound: u64,
    estimated_items: usize,
    /// Made on the first insert: a host that never caches pays nothing.
    entries: OnceLock<Entries<V>>,
    totals: Arc<Totals>,
    hasher: DefaultHashBuilder,
    next_owner: AtomicU64,
}

type Entries<V> = quick_cache::sync::Cache<Key, Arc<Slot<V>>, ByWeight>;

/// What every owner's live entries weigh together.
#[derive(Default)]
struct Totals {
    weight: AtomicU64,
    items: AtomicU64,
}

/// A cached key: its owner, its hash (computed once, with a per-process
/// random seed, over owner and bytes) and its bytes.
#[derive(PartialEq, Eq)]
struct Key {
    owner: u64,
    hash: u64,
    bytes: Box<[u8]>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A lookup by the key's bytes.
struct Probe<'a> {
    owner: u64,
    hash: u64,
    bytes: &'a [u8],
}

impl Hash for Probe<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for Probe<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        key.hash == self.hash && key.owner == self.owner && *key.bytes == *self.bytes
    }
}

/// A lookup by owner and hash alone, for the owner's own bookkeeping
/// (eviction under its quota, removal when it goes): never used to answer a
/// request, so two of one owner's keys sharing a 64-bit hash can at worst
/// cost one of them its entry.
struct ByHash {
    owner: u64,
    hash: u64,
}

impl Hash for ByHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for ByHash {
    fn equivalent(&self, key: &Key) -> bool {
        key.hash == self.hash && key.owner == self.owner
    }
}

#[derive(Clone)]
struct ByWeight;

impl<V> Weighter<Key, Arc<Slot<V>>> for ByWeight {
    fn weight(&self, _: &Key, slot: &Arc<Slot<V>>) -> u64 {
        // Zero-weight entries are never evicted by quick_cache: at least 1.
        slot.weight.max(1)
    }
}

/// A cached value with what it weighs and whose it is.
struct Slot<V> {
    value: V,
    weight: u64,
    /// Used since it was cached or last given a second chance (the owner's
    /// CLOCK; quick_cache keeps its own marks for S3-FIFO).
    used: AtomicBool,
    owner: Arc<Owner>,
}

impl<V> Drop for Slot<V> {
    fn drop(&mut self) {
        self.owner.weight.fetch_sub(self.weight, Relaxed);
        self.owner.items.fetch_sub(1, Relaxed);
        self.owner.totals.weight.fetch_sub(self.weight, Relaxed);
        self.owner.totals.items.fetch_sub(1, Relaxed);
    }
}

/// One owner's accounts.
struct Owner {
    id: u64,
    quota: Quota,
    weight: AtomicU64,
    items: AtomicU64,
    /// Hashes of the owner's keys, oldest first; may hold hashes of entries
    /// already evicted (skipped when met, and compacted away).
    ring: Mutex<VecDeque<u64>>,
    totals: Arc<Totals>,
}

/// A value held by the cache (or just made for it), readable as `V`.
pub struct Held<V>(Arc<Slot<V>>);

impl<V> Clone for Held<V> {
    fn clone(&self) -> Self {
        Held(self.0.clone())
    }
}

impl<V> Deref for Held<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.0.value
    }
}

/// Bytes glibc's malloc takes for an allocation of `n` bytes (its chunk: the
/// request plus an 8-byte header, rounded up to 16, at least 32). Other
/// allocators round similarly; a unit test checks the sums against a
/// counting allocator.
pub const fn heap(n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        let chunk = (n + 8 + 15) & !15;
        (if chunk < 32 { 32 } else { chunk }) as u64
    }
}

/// Bytes of quick_cache's slab per entry: `Resident { key, value, state,
/// referenced }` in an enum, with two links, is 64 bytes; the slab is a
/// `Vec` that grows by doubling, so it has on average about half as many
/// slots again as it uses (the accounting test checks the whole).
const SLAB_SLOT: u64 = 64 * 3 / 2;
/// Bytes of quick_cache's hash table per entry: a 4-byte token and a control
/// byte per bucket, buckets a power of two at most 7/8 full.
const MAP_SLOT: u64 = 8;
/// Bytes of an owner's ring per entry: 8 per hash, the ring allowed twice
/// the owner's entries before it is compacted.
const RING_SLOT: u64 = 16;
/// quick_cache keeps the hashes of recently evicted keys ("ghosts", in slab
/// and table slots) up to this share of its estimated entries.
const GHOST_ALLOCATION: f64 = 0.5;

impl<V> SharedCache<V> {
    /// A cache bounded to `bound` weight, for entries of about
    /// `typical_weight` (which sizes quick_cache's ghost list). When weights
    /// are bytes (`bytes` true), the most the ghost list's slots can take is
    /// counted up front and taken from the capacity, so that the entries'
    /// weights and the tables together stay within `bound`.
    pub fn new(bound: u64, typical_weight: u64, bytes: bool) -> SharedCache<V> {
        let estimated_items = usize::try_from(bound / typical_weight.max(1))
            .unwrap_or(usize::MAX)
            .max(32);
        let fixed = if bytes {
            (estimated_items as f64 * GHOST_ALLOCATION) as u64 * (SLAB_SLOT + MAP_SLOT)
        } else {
            0
        };
        SharedCache {
            inner: Arc::new(Inner {
                capacity: bound.saturating_sub(fixed),
                bound,
                estimated_items,
                entries: OnceLock::new(),
                totals: Arc::default(),
                hasher: DefaultHashBuilder::default(),
                next_owner: AtomicU64::new(1),
            }),
        }
    }

    /// Bytes an entry costs besides its value's own heap, for a cache weighed
    /// in bytes: the key's allocation, the value's `Arc`, quick_cache's slab
    /// and table slots, and the owner's ring.
    pub fn entry_bytes(key_len: usize) -> u64 {
        // The Arc's allocation: two counts and the slot.
        heap(key_len) + heap(2 * size_of::<usize>() + size_of::<Slot<V>>()) + Self::SLOT_BYTES
    }

    /// Of [`SharedCache::entry_bytes`], what is not an allocation of the
    /// entry's own: its share of quick_cache's slab and table, and of its
    /// owner's ring.
    pub const SLOT_BYTES: u64 = SLAB_SLOT + MAP_SLOT + RING_SLOT;

    /// The bound as configured.
    pub fn bound(&self) -> u64 {
        self.inner.bound
    }

    /// What every owner's entries weigh together now (including entries
    /// evicted but still in use by a request).
    pub fn weight(&self) -> u64 {
        self.inner.totals.weight.load(Relaxed)
    }

    /// Entries alive now (as [`SharedCache::weight`]).
    pub fn len(&self) -> u64 {
        self.inner.totals.items.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new owner, holding at most `quota`.
    pub fn share(&self, quota: Quota) -> Share<V> {
        Share {
            cache: self.inner.clone(),
            owner: Arc::new(Owner {
                id: self.inner.next_owner.fetch_add(1, Relaxed),
                quota,
                weight: AtomicU64::new(0),
                items: AtomicU64::new(0),
                ring: Mutex::new(VecDeque::new()),
                totals: self.inner.totals.clone(),
            }),
        }
    }

    /// Removes every entry whose value `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&V) -> bool) {
        if let Some(entries) = self.inner.entries.get() {
            entries.retain(|_, slot| keep(&slot.value));
        }
    }

    /// Removes entries, in no particular order, until at least `weight` is
    /// released from the cache (or it is empty); returns what was. For
    /// emergencies (the process out of descriptors), not for normal
    /// eviction.
    pub fn release(&self, weight: u64) -> u64 {
        let Some(entries) = self.inner.entries.get() else {
            return 0;
        };
        let released = std::cell::Cell::new(0u64);
        entries.retain(|_, slot| {
            if released.get() >= weight {
                return true;
            }
            released.set(released.get() + slot.weight.max(1));
            false
        });
        released.get()
    }
}

impl<V> Inner<V> {
    fn entries(&self) -> &Entries<V> {
        self.entries.get_or_init(|| {
            Entries::with_options(
                quick_cache::OptionsBuilder::new()
                    .estimated_items_capacity(self.estimated_items)
                    .weight_capacity(self.capacity)
                    .ghost_allocation(GHOST_ALLOCATION)
                    .build()
                    .expect("valid options"),
                ByWeight,
                DefaultHashBuilder::default(),
                Default::default(),
            )
        })
    }
}

/// One owner's part of a [`SharedCache`]: its lookups and inserts. Dropping
/// it removes the owner's entries.
pub struct Share<V> {
    cache: Arc<Inner<V>>,
    owner: Arc<Owner>,
}

impl<V> Share<V> {
    /// The hash of `key` for this owner, for [`Share::get`] and
    /// [`Share::insert`].
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.cache.hasher.hash_one((self.owner.id, key))
    }

    /// The value cached for `key` (whose [`Share::hash`] is `hash`).
    pub fn get(&self, key: &[u8], hash: u64) -> Option<Held<V>> {
        let slot = self.cache.entries.get()?.get(&Probe {
            owner: self.owner.id,
            hash,
            bytes: key,
        })?;
        // A load first: a hot entry's line is read, not written, per hit.
        if !slot.used.load(Relaxed) {
            slot.used.store(true, Relaxed);
        }
        Some(Held(slot))
    }

    /// What this owner's entries weigh now.
    pub fn weight(&self) -> u64 {
        self.owner.weight.load(Relaxed)
    }

    /// This owner's entries now.
    pub fn len(&self) -> u64 {
        self.owner.items.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Caches `value` under `key` with its `weight` (and returns it, held);
    /// evicts this owner's oldest entries if it is then over its quota. An
    /// entry heavier than the quota, or than the cache can take, is returned
    /// without being cached.
    pub fn insert(&self, key: Box<[u8]>, hash: u64, value: V, weight: u64) -> Held<V> {
        let owner = &self.owner;
        owner.weight.fetch_add(weight, Relaxed);
        owner.items.fetch_add(1, Relaxed);
        owner.totals.weight.fetch_add(weight, Relaxed);
        owner.totals.items.fetch_add(1, Relaxed);
        let held = Held(Arc::new(Slot {
            value,
            weight,
            used: AtomicBool::new(false),
            owner: owner.clone(),
        }));
        if weight > owner.quota.weight || owner.quota.items == 0 {
            return held;
        }
        self.cache.entries().insert(
            Key {
                owner: owner.id,
                hash,
                bytes: key,
            },
            held.0.clone(),
        );
        let mut ring = owner.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.push_back(hash);
        self.enforce_quota(&mut ring);
        held
    }

    /// Evicts this owner's entries, oldest first, until it is within its
    /// quota; an entry used since it was last looked at is moved to the back
    /// instead (once: its mark is cleared). The entry just inserted is at the
    /// back, so it goes last.
    fn enforce_quota(&self, ring: &mut VecDeque<u64>) {
        let owner = &self.owner;
        let quota = owner.quota;
        // Entries evicted by the host-wide cache but still referenced by a
        // request are counted until they drop: aim at what the cache holds.
        let mut over_weight = owner.weight.load(Relaxed).saturating_sub(quota.weight);
        let mut over_items = owner.items.load(Relaxed).saturating_sub(quota.items);
        let entries = self.cache.entries();
        // Each entry is met at most twice (once to clear its mark).
        let mut steps = 2 * ring.len() + 1;
        while (over_weight > 0 || over_items > 0) && steps > 0 {
            steps -= 1;
            let Some(hash) = ring.pop_front() else { break };
            let probe = ByHash {
                owner: owner.id,
                hash,
            };
            let Some(slot) = entries.peek(&probe) else {
                continue; // evicted already
            };
            if slot.used.swap(false, Relaxed) {
                ring.push_back(hash);
                continue;
            }
            if entries
                .remove_if(&probe, |s| Arc::ptr_eq(s, &slot))
                .is_some()
            {
                over_weight = over_weight.saturating_sub(slot.weight);
                over_items = over_items.saturating_sub(1);
            }
        }
        // Hashes of entries the host-wide cache evicted stay in the ring
        // until met; past twice the owner's entries, drop them (and any
        // duplicate: a key inserted twice by racing misses).
        let live = owner.items.load(Relaxed);
        if ring.len() as u64 > 2 * live + 64 {
            let mut seen = HashSet::with_capacity(ring.len());
            ring.retain(|&hash| {
                seen.insert(hash)
                    && entries.contains_key(&ByHash {
                        owner: owner.id,
                        hash,
                    })
            });
            if ring.capacity() > 4 * ring.len() + 64 {
                ring.shrink_to_fit();
            }
        }
    }
}

impl<V> Drop for Share<V> {
    fn drop(&mut self) {
        let Some(entries) = self.cache.entries.get() else {
            return;
        };
        let ring = std::mem::take(&mut *self.owner.ring.lock().unwrap_or_else(|e| e.into_inner()));
        for hash in ring {
            entries.remove(&ByHash {
                owner: self.owner.id,
                hash,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: &str, i: u64) -> Box<[u8]> {
        format!("{owner}/{i}").into_bytes().into()
    }

    fn put(share: &Share<u64>, k: &[u8], value: u64, weight: u64) {
        share.insert(k.into(), share.hash(k), value, weight);
    }

    fn get(share: &Share<u64>, k: &[u8]) -> Option<u64> {
        share.get(k, share.hash(k)).map(|h| *h)
    }

    const NO_QUOTA: Quota = Quota {
        weight: u64::MAX,
        items: u64::MAX,
    };

    #[test]
    fn one_owners_entry_never_answers_another() {
        let cache = SharedCache::new(1 << 20, 100, false);
        let (a, b) = (cache.share(NO_QUOTA), cache.share(NO_QUOTA));
        put(&a, b"/index.html", 1, 100);
        assert_eq!(get(&a, b"/index.html"), Some(1));
        assert_eq!(get(&b, b"/index.html"), None, "b must not see a's entry");
        put(&b, b"/index.html", 2, 100);
        assert_eq!(get(&a, b"/index.html"), Some(1));
        assert_eq!(get(&b, b"/index.html"), Some(2));
        // A reload makes a new owner: the old generation's entries are not
        // its, and they go with the old one.
        let a2 = cache.share(NO_QUOTA);
        assert_eq!(get(&a2, b"/index.html"), None);
        drop(a);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.weight(), 100);
    }

    #[test]
    fn an_owner_over_its_quota_evicts_its_own_oldest_unused_entries() {
        let cache = SharedCache::new(1 << 20, 100, false);
        let other = cache.share(NO_QUOTA);
        put(&other, b"keep", 0, 100);
        let quota = Quota {
            weight: 1000,
            items: u64::MAX,
        };
        let noisy = cache.share(quota);
        put(&noisy, &key("n", 0), 0, 100);
        // Used: gets a second chance when its turn comes.
        assert_eq!(get(&noisy, &key("n", 0)), Some(0));
        for i in 1..100 {
            put(&noisy, &key("n", i), i, 100);
            assert!(noisy.weight() <= quota.weight, "{}", noisy.weight());
        }
        assert_eq!(noisy.len(), 10);
        assert_eq!(get(&noisy, &key("n", 99)), Some(99), "the newest stays");
        assert_eq!(get(&noisy, &key("n", 1)), None, "the oldest unused went");
        assert_eq!(get(&other, b"keep"), Some(0), "nobody else's entry went");
        // The quota in entries works the same way.
        let few = cache.share(Quota {
            weight: u64::MAX,
            items: 3,
        });
        for i in 0..10 {
            put(&few, &key("f", i), i, 1);
        }
        assert_eq!(few.len(), 3);
        assert_eq!(get(&few, &key("f", 9)), Some(9));
    }

    /// The host-wide bound holds whatever the number of owners, and a
    /// tenant flooding the cache with new keys (the attack on per-site
    /// caches) cannot push out the entries other tenants use.
    #[test]
    fn the_host_wide_bound_holds_and_a_flood_of_new_keys_keeps_others_hot_entries() {
        let capacity = 200_000;
        let cache = SharedCache::new(capacity, 100, false);
        let quota = Quota {
            weight: capacity / 4,
            items: u64::MAX,
        };
        // 64 tenants, each wanting a quarter of the cache: 16 times it.
        let tenants: Vec<_> = (0..64).map(|_| cache.share(quota)).collect();
        for round in 0..20u64 {
            for (t, share) in tenants.iter().enumerate() {
                for i in 0..50 {
                    put(share, &key(&t.to_string(), round * 50 + i), i, 100);
                }
                assert!(cache.weight() <= capacity, "{}", cache.weight());
            }
        }
        drop(tenants);
        assert_eq!(cache.weight(), 0, "dropped owners leave nothing behind");

        // Quiet tenants with a working set they keep using, and a noisy one
        // that asks for a new key every time, ten times the cache over.
        let quiet: Vec<_> = (0..4).map(|_| cache.share(quota)).collect();
        let noisy = cache.share(quota);
        let working_set = 100; // per quiet tenant: 40 % of the cache in all
        let use_all = |round: u64| {
            let mut hits = 0;
            for (t, share) in quiet.iter().enumerate() {
                for i in 0..working_set {
                    let k = key(&format!("q{t}"), i);
                    if get(share, &k).is_some() {
                        hits += 1;
                    } else {
                        put(share, &k, round, 100);
                    }
                }
            }
            hits
        };
        use_all(0);
        use_all(1);
        let mut n = 0;
        for round in 2..12 {
            for _ in 0..2_000 {
                put(&noisy, &key("noisy", n), n, 100);
                n += 1;
            }
            let hits = use_all(round);
            assert!(
                hits >= 4 * working_set * 95 / 100,
                "round {round}: only {hits} of {} hits",
                4 * working_set
            );
            assert!(noisy.weight() <= quota.weight);
            assert!(cache.weight() <= capacity);
        }

        // A tenant whose own keys are hot too (each used twice running,
        // twice the cache in all): S3-FIFO alone would let it take the
        // cache; its quota keeps it to a quarter.
        let greedy = cache.share(quota);
        for round in 12..22 {
            for i in 0..2 * capacity / 100 {
                let k = key("greedy", i);
                if get(&greedy, &k).is_none() {
                    put(&greedy, &k, i, 100);
                }
                get(&greedy, &k);
            }
            let hits = use_all(round);
            assert!(
                hits >= 4 * working_set * 95 / 100,
                "round {round}: only {hits} of {} hits",
                4 * working_set
            );
            assert!(greedy.weight() <= quota.weight);
        }
    }

    #[test]
    fn release_gives_back_at_least_what_is_asked() {
        let cache = SharedCache::new(1000, 1, false);
        let share = cache.share(NO_QUOTA);
        for i in 0..100 {
            put(&share, &key("x", i), i, 4);
        }
        let before = cache.weight();
        let released = cache.release(before / 2);
        assert!(released >= before / 2);
        assert_eq!(cache.weight(), before - released);
    }
}
