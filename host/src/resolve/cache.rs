//! The open-file cache: recent lookups, with their descriptors kept open, so a
//! hot path costs no path walk.
//!
//! Like nginx's `open_file_cache`, it keeps, per request path, the opened file
//! (or the index file of a directory), its opened precompressed siblings, and
//! the absence of the others — and also the absence of the path itself
//! (nginx's `open_file_cache_errors`). Unlike nginx, which trusts cached
//! metadata for `open_file_cache_valid` (60 s by default), every hit here reads
//! the metadata again with `fstat(2)` on the cached descriptors (one cheap
//! syscall, no path walk):
//!
//! * a file **modified or truncated in place** is the same inode: the policy
//!   sees its new size and time at once, so `Content-Length` and `ETag` always
//!   describe the bytes sent (a change racing the send itself is caught by the
//!   transfer engine, which ends the response rather than pad it);
//! * a file **replaced by rename** (the usual atomic deploy) leaves the cached
//!   descriptor on an unlinked inode (`st_nlink` 0): the hit is refused and
//!   the path walked again at once. A replacement the descriptors cannot see
//!   (a new sibling appearing, a file moved away but still linked elsewhere, a
//!   path that was missing being created) shows within `valid-ms` (default
//!   1 s), after which every entry is walked again;
//! * `valid-ms = 0` turns the cache off: every request walks its path.
//!
//! Bounds. Every site's entries live in one host-wide cache
//! ([`crate::shared_cache`]) weighed in descriptors: all sites together hold
//! at most `[cache] descriptors` (a share of the descriptor limit, see
//! [`crate::descriptors`]; a cached absence counts as one), evicting across
//! sites (S3-FIFO), and one site at most `open-files` paths (so with many
//! tenants, set `open-files` well below `descriptors` for each to keep a
//! share even of hot paths). An entry also costs a few hundred bytes of
//! memory (its path, its `Found`, its slots), so the budget bounds that too.
//! Entries older than the window are dropped by [`sweep`], so a deleted
//! file's space is not held for long.
//!
//! Running short. A lookup that finds no descriptor left (EMFILE, ENFILE)
//! first makes every site's cache give back half of what it holds, then
//! tries once more; if that fails too, the request is told so (the handler
//! answers 503) and nothing is cached: an absence is cached only when the
//! kernel said the path is not there.

use std::time::{Duration, Instant};

use super::{Found, NoDescriptors, Root};
use crate::coding::Coding;
use crate::config::CacheConfig;
use crate::shared_cache::{Quota, Share, SharedCache};
use crate::stats;

/// A cached lookup and when it stops being trusted.
pub struct Cached {
    found: Found,
    until: Instant,
}

/// The host-wide store of every site's cached lookups, weighed in
/// descriptors.
pub type OpenFiles = SharedCache<Cached>;

/// The host-wide store bounded to `descriptors`.
pub fn open_files(descriptors: u64) -> OpenFiles {
    SharedCache::new(descriptors, 1, false)
}

/// Closes the descriptors of entries past their window, every site's.
pub fn sweep(store: &OpenFiles) {
    let now = Instant::now();
    store.retain(|cached| now < cached.until);
}

/// Recent lookups of one site's paths, for the policy now loaded (whose
/// capabilities say which index names and siblings a lookup includes): its
/// share of the host-wide store.
pub struct FileCache {
    valid: Duration,
    store: OpenFiles,
    share: Share<Cached>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("valid", &self.valid)
            .field("entries", &self.share.len())
            .finish()
    }
}

impl FileCache {
    /// A site's cache as configured, a share of `store`; `None` when it is
    /// turned off.
    pub fn new(store: &OpenFiles, config: &CacheConfig) -> Option<FileCache> {
        if config.valid_ms == 0 || config.open_files == 0 || store.bound() == 0 {
            return None;
        }
        Some(FileCache {
            valid: Duration::from_millis(config.valid_ms),
            store: store.clone(),
            share: store.share(Quota {
                weight: u64::MAX,
                items: config.open_files as u64,
            }),
        })
    }

    /// [`Root::lookup`], answered from the cache when a fresh entry still
    /// describes what is on disk.
    pub fn lookup(
        &self,
        root: &Root,
        relative: &str,
        index_names: &[String],
        codings: &[Coding],
    ) -> Result<Found, NoDescriptors> {
        let now = Instant::now();
        let hash = self.share.hash(relative.as_bytes());
        if let Some(cached) = self.share.get(relative.as_bytes(), hash) {
            if now < cached.until {
                if let Some(found) = cached.found.refreshed() {
                    stats::add(&stats::get().open_file_hits, 1);
                    return Ok(found);
                }
            }
        }
        let found = match root.lookup(relative, index_names, codings) {
            Ok(found) => found,
            Err(e) => {
                // Out of descriptors: the caches give back half of theirs
                // (every site's: the limit is the process's), then one more
                // try. The cache is for speed; it must not cost a request.
                let released = self.store.release(self.store.weight().div_ceil(2));
                if released > 0 {
                    tracing::warn!(
                        error = %e,
                        released,
                        "no descriptor left to open a file: the open-file caches closed some"
                    );
                    stats::add(&stats::get().open_file_releases, released);
                }
                root.lookup(relative, index_names, codings)?
            }
        };
        let descriptors = found.descriptors() as u64;
        self.share.insert(
            relative.as_bytes().into(),
            hash,
            Cached {
                found: found.clone(),
                until: now + self.valid,
            },
            descriptors,
        );
        Ok(found)
    }

    /// Descriptors this site's entries hold open (for tests).
    pub fn descriptors(&self) -> u64 {
        self.share.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cache(valid_ms: u64) -> FileCache {
        FileCache::new(
            &open_files(1024),
            &CacheConfig {
                valid_ms,
                ..CacheConfig::default()
            },
        )
        .unwrap()
    }

    fn lookup(cache: &FileCache, root: &Root, path: &str, codings: &[Coding]) -> Found {
        cache.lookup(root, path, &[], codings).unwrap()
    }

    fn size(found: &Found) -> Option<u64> {
        match found {
            Found::File(f) => Some(f.file.meta.size),
            _ => None,
        }
    }

    #[test]
    fn in_place_changes_are_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(60_000);
        assert_eq!(size(&lookup(&cache, &root, "a.txt", &[])), Some(5));
        // Truncated and rewritten in place: same inode, new size.
        std::fs::write(&path, "hello, world").unwrap();
        assert_eq!(size(&lookup(&cache, &root, "a.txt", &[])), Some(12));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2)
            .unwrap();
        assert_eq!(size(&lookup(&cache, &root, "a.txt", &[])), Some(2));
    }

    #[test]
    fn a_rename_over_the_file_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "old").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(60_000);
        let before = match lookup(&cache, &root, "a.txt", &[]) {
            Found::File(f) => f.file.meta.inode,
            other => panic!("{other:?}"),
        };
        std::fs::write(dir.path().join("new.txt"), "brand new").unwrap();
        std::fs::rename(dir.path().join("new.txt"), dir.path().join("a.txt")).unwrap();
        match lookup(&cache, &root, "a.txt", &[]) {
            Found::File(f) => {
                assert_ne!(f.file.meta.inode, before);
                assert_eq!(f.file.meta.size, 9);
            }
            other => panic!("{other:?}"),
        }
        // Deleted: missing at once too.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        assert!(matches!(
            lookup(&cache, &root, "a.txt", &[]),
            Found::Missing
        ));
    }

    #[test]
    fn what_descriptors_cannot_see_shows_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(200);
        let siblings = |cache: &FileCache| match lookup(cache, &root, "a.txt", &[Coding::Gzip]) {
            Found::File(f) => f.siblings.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(siblings(&cache), 0);
        assert!(matches!(
            lookup(&cache, &root, "b.txt", &[]),
            Found::Missing
        ));
        std::fs::write(dir.path().join("a.txt.gz"), "gz").unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        // Within the window the cached absence stands (nginx's
        // open_file_cache_errors); after it, the path is walked again.
        assert_eq!(siblings(&cache), 0);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(siblings(&cache), 1);
        assert_eq!(size(&lookup(&cache, &root, "b.txt", &[])), Some(1));
    }

    #[test]
    fn sweeping_closes_old_entries_and_zero_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let store = open_files(1024);
        let cache = FileCache::new(
            &store,
            &CacheConfig {
                valid_ms: 50,
                ..CacheConfig::default()
            },
        )
        .unwrap();
        lookup(&cache, &root, "a.txt", &[]);
        assert_eq!(cache.descriptors(), 1);
        std::thread::sleep(Duration::from_millis(80));
        sweep(&store);
        assert_eq!(cache.descriptors(), 0);
        assert!(FileCache::new(
            &store,
            &CacheConfig {
                valid_ms: 0,
                ..CacheConfig::default()
            }
        )
        .is_none());
    }

    /// One budget for every site: a site reading many files evicts across
    /// sites (closing what it evicts) but not another site's file in use.
    #[test]
    fn all_sites_together_hold_at_most_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            std::fs::write(dir.path().join(format!("f{i}")), "x").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let store = open_files(8);
        let config = CacheConfig {
            valid_ms: 60_000,
            ..CacheConfig::default()
        };
        let (a, b) = (
            FileCache::new(&store, &config).unwrap(),
            FileCache::new(&store, &config).unwrap(),
        );
        let file = |found: Found| match found {
            Found::File(f) => f.file.file,
            other => panic!("{other:?}"),
        };
        let hot = file(lookup(&b, &root, "f0", &[]));
        assert!(Arc::ptr_eq(&hot, &file(lookup(&b, &root, "f0", &[]))));
        let mut flooded = Vec::new();
        for i in 1..40 {
            flooded.push(Arc::downgrade(&file(lookup(
                &a,
                &root,
                &format!("f{i}"),
                &[],
            ))));
            assert!(store.weight() <= 8, "{}", store.weight());
            // b's file, in use, stays cached: the same descriptor.
            assert!(Arc::ptr_eq(&hot, &file(lookup(&b, &root, "f0", &[]))));
        }
        // What was evicted was closed (no reference left to its File).
        let open = flooded.iter().filter(|w| w.upgrade().is_some()).count();
        assert!(open <= 7, "{open} of a's descriptors still open");
        assert_eq!(a.descriptors() + b.descriptors(), store.weight());
        // A site going (a reload) closes its entries at once.
        drop(a);
        assert_eq!(store.weight(), 1);
    }
}
