//! The idle instances of every site's policy, host-wide.
//!
//! An instance belongs to one site (its *owner*, a [`super::Policy`]): it
//! was configured for that site, has seen only that site's requests, and is
//! only ever handed back to that site, so nothing a call leaves in an
//! instance's memory can reach another tenant. What sites may share is
//! immutable (compiled code, the load-time configure and canary result);
//! see `shared.rs`.
//!
//! The set is host-wide so that host-wide bounds can be kept over it:
//!
//! * **memory**: idle instances together hold at most `idle-memory` bytes
//!   of linear memory (as sized by the instances, an upper bound on what is
//!   resident); giving one back past that drops the least recently used
//!   idle instance of any site;
//! * **slots**: the pooling allocator has a fixed number of instance slots;
//!   when a site needs a new instance and none is free, the least recently
//!   used idle instance of any site is dropped to free one
//!   ([`Idle::evict_lru`]) instead of answering 503;
//! * **time**: an instance not used for a while is dropped
//!   ([`Idle::reclaim`]), so a tenant that went quiet holds none.
//!
//! One mutex guards it all: taking or giving back an instance is a hash
//! lookup and a B-tree insert or remove under it, well below the cost of the
//! policy call around it. Instances are dropped after the lock is released
//! (dropping one resets its pool slot).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::instance::Warm;
use crate::stats;

/// Which site's pool an instance belongs to.
pub(crate) type Owner = u64;

/// The host-wide set of idle instances (see the module comment).
pub(crate) struct Idle {
    inner: Mutex<Inner>,
    /// Linear memory idle instances may hold together, bytes.
    max_bytes: u64,
    next_owner: AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Each owner's idle instances, least recently used first.
    owners: HashMap<Owner, VecDeque<Entry>>,
    /// Every idle instance by when it was given back (a stamp that only
    /// grows), naming its owner: the first is the least recently used.
    lru: BTreeMap<u64, Owner>,
    next_stamp: u64,
    /// Linear memory of the instances held, bytes.
    bytes: u64,
}

struct Entry {
    stamp: u64,
    since: Instant,
    warm: Warm,
}

/// Which of an owner's idle instances to take.
#[derive(Clone, Copy)]
enum Which {
    LeastRecent,
    MostRecent,
}

impl Inner {
    fn remove(&mut self, owner: Owner, which: Which) -> Option<Warm> {
        let queue = self.owners.get_mut(&owner)?;
        let entry = match which {
            Which::LeastRecent => queue.pop_front(),
            Which::MostRecent => queue.pop_back(),
        }?;
        if queue.is_empty() {
            self.owners.remove(&owner);
        }
        self.lru.remove(&entry.stamp);
        self.bytes -= entry.warm.memory_bytes();
        Some(entry.warm)
    }

    /// The least recently used idle instance of any owner.
    fn pop_lru(&mut self) -> Option<Warm> {
        let (_, &owner) = self.lru.first_key_value()?;
        // An owner's queue is in stamp order, so the globally oldest stamp
        // is at the front of its owner's queue.
        self.remove(owner, Which::LeastRecent)
    }
}

impl Idle {
    pub(crate) fn new(max_bytes: u64) -> Idle {
        Idle {
            inner: Mutex::new(Inner::default()),
            max_bytes,
            next_owner: AtomicU64::new(0),
        }
    }

    /// A new owner: a site's policy, holding no instance yet.
    pub(crate) fn owner(&self) -> Owner {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("not poisoned")
    }

    /// `owner`'s most recently used idle instance, if it has one.
    pub(crate) fn take(&self, owner: Owner) -> Option<Warm> {
        self.lock().remove(owner, Which::MostRecent)
    }

    /// Keeps `warm` for `owner`'s next call, unless `owner` already holds
    /// `per_owner` idle instances; drops least recently used instances (of
    /// any owner) while the set holds more memory than its bound.
    pub(crate) fn give(&self, owner: Owner, warm: Warm, per_owner: usize) {
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        let held = inner.owners.get(&owner).map_or(0, VecDeque::len);
        if held >= per_owner || warm.memory_bytes() > self.max_bytes {
            drop(inner);
            drop(warm);
            return;
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.bytes += warm.memory_bytes();
        inner.lru.insert(stamp, owner);
        inner.owners.entry(owner).or_default().push_back(Entry {
            stamp,
            since: Instant::now(),
            warm,
        });
        while inner.bytes > self.max_bytes {
            match inner.pop_lru() {
                Some(w) => evicted.push(w),
                None => break,
            }
        }
        drop(inner);
        if !evicted.is_empty() {
            stats::add(&stats::get().instances_evicted, evicted.len() as u64);
        }
    }

    /// Drops the least recently used idle instance of any owner, freeing
    /// its pool slot; `false` if none is idle.
    pub(crate) fn evict_lru(&self) -> bool {
        let evicted = self.lock().pop_lru();
        let found = evicted.is_some();
        drop(evicted);
        if found {
            stats::add(&stats::get().instances_evicted, 1);
        }
        found
    }

    /// Drops the instances idle for `idle_for` or longer, of every owner.
    pub(crate) fn reclaim(&self, idle_for: Duration) -> usize {
        let mut dropped = Vec::new();
        {
            let mut inner = self.lock();
            while let Some((_, &owner)) = inner.lru.first_key_value() {
                let old = inner
                    .owners
                    .get(&owner)
                    .and_then(VecDeque::front)
                    .is_some_and(|e| e.since.elapsed() >= idle_for);
                if !old {
                    break;
                }
                dropped.extend(inner.remove(owner, Which::LeastRecent));
            }
        }
        if !dropped.is_empty() {
            stats::add(&stats::get().instances_reclaimed, dropped.len() as u64);
        }
        dropped.len()
    }

    /// Drops every idle instance of `owner` (its site's policy is gone).
    pub(crate) fn forget(&self, owner: Owner) {
        let gone = {
            let mut inner = self.lock();
            let gone = inner.owners.remove(&owner).unwrap_or_default();
            for e in &gone {
                inner.lru.remove(&e.stamp);
                inner.bytes -= e.warm.memory_bytes();
            }
            gone
        };
        drop(gone);
    }

    /// Idle instances `owner` holds.
    pub(crate) fn held(&self, owner: Owner) -> usize {
        self.lock().owners.get(&owner).map_or(0, VecDeque::len)
    }

    /// Idle instances held host-wide, and their linear memory in bytes.
    pub(crate) fn total(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.lru.len(), inner.bytes)
    }
}
