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
//! Bounds: at most `open-files` paths per site, each holding at most
//! 1 + (number of sibling codings) descriptors; entries older than the window
//! are dropped by [`FileCache::sweep`], so a deleted file's space is not held
//! for long.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{Found, Root};
use crate::coding::Coding;
use crate::config::CacheConfig;
use crate::stats;

struct Cached {
    found: Found,
    at: Instant,
}

/// Recent lookups of one site's paths, for the policy now loaded (whose
/// capabilities say which index names and siblings a lookup includes).
pub struct FileCache {
    valid: Duration,
    capacity: usize,
    /// Made on the first lookup: quick_cache sizes its tables up front, and
    /// a site nobody visits (one of thousands of tenants) should not pay.
    entries: OnceLock<quick_cache::sync::Cache<Box<str>, Arc<Cached>>>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("valid", &self.valid)
            .field("entries", &self.entries.get().map_or(0, |e| e.len()))
            .finish()
    }
}

impl FileCache {
    /// A cache as configured; `None` when it is turned off.
    pub fn new(config: &CacheConfig) -> Option<FileCache> {
        if config.valid_ms == 0 || config.open_files == 0 {
            return None;
        }
        Some(FileCache {
            valid: Duration::from_millis(config.valid_ms),
            capacity: config.open_files,
            entries: OnceLock::new(),
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
    ) -> Found {
        let now = Instant::now();
        let entries = self
            .entries
            .get_or_init(|| quick_cache::sync::Cache::new(self.capacity));
        if let Some(cached) = entries.get(relative) {
            if now.duration_since(cached.at) < self.valid {
                if let Some(found) = cached.found.refreshed() {
                    stats::add(&stats::get().open_file_hits, 1);
                    return found;
                }
            }
        }
        let found = root.lookup(relative, index_names, codings);
        entries.insert(
            relative.into(),
            Arc::new(Cached {
                found: found.clone(),
                at: now,
            }),
        );
        found
    }

    /// Drops entries older than the window, closing their descriptors.
    pub fn sweep(&self) {
        let now = Instant::now();
        let Some(entries) = self.entries.get() else {
            return;
        };
        entries.retain(|_, cached| now.duration_since(cached.at) < self.valid);
    }

    /// Descriptors the cache holds open (for the admin counters and tests).
    pub fn descriptors(&self) -> usize {
        self.entries
            .get()
            .into_iter()
            .flat_map(|e| e.iter())
            .map(|(_, c)| c.found.descriptors())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(valid_ms: u64) -> FileCache {
        FileCache::new(&CacheConfig {
            valid_ms,
            ..CacheConfig::default()
        })
        .unwrap()
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
        assert_eq!(size(&cache.lookup(&root, "a.txt", &[], &[])), Some(5));
        // Truncated and rewritten in place: same inode, new size.
        std::fs::write(&path, "hello, world").unwrap();
        assert_eq!(size(&cache.lookup(&root, "a.txt", &[], &[])), Some(12));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2)
            .unwrap();
        assert_eq!(size(&cache.lookup(&root, "a.txt", &[], &[])), Some(2));
    }

    #[test]
    fn a_rename_over_the_file_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "old").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(60_000);
        let before = match cache.lookup(&root, "a.txt", &[], &[]) {
            Found::File(f) => f.file.meta.inode,
            other => panic!("{other:?}"),
        };
        std::fs::write(dir.path().join("new.txt"), "brand new").unwrap();
        std::fs::rename(dir.path().join("new.txt"), dir.path().join("a.txt")).unwrap();
        match cache.lookup(&root, "a.txt", &[], &[]) {
            Found::File(f) => {
                assert_ne!(f.file.meta.inode, before);
                assert_eq!(f.file.meta.size, 9);
            }
            other => panic!("{other:?}"),
        }
        // Deleted: missing at once too.
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        assert!(matches!(
            cache.lookup(&root, "a.txt", &[], &[]),
            Found::Missing
        ));
    }

    #[test]
    fn what_descriptors_cannot_see_shows_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(200);
        let siblings = |cache: &FileCache| match cache.lookup(&root, "a.txt", &[], &[Coding::Gzip])
        {
            Found::File(f) => f.siblings.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(siblings(&cache), 0);
        assert!(matches!(
            cache.lookup(&root, "b.txt", &[], &[]),
            Found::Missing
        ));
        std::fs::write(dir.path().join("a.txt.gz"), "gz").unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        // Within the window the cached absence stands (nginx's
        // open_file_cache_errors); after it, the path is walked again.
        assert_eq!(siblings(&cache), 0);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(siblings(&cache), 1);
        assert_eq!(size(&cache.lookup(&root, "b.txt", &[], &[])), Some(1));
    }

    #[test]
    fn sweeping_closes_old_entries_and_zero_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let cache = cache(50);
        cache.lookup(&root, "a.txt", &[], &[]);
        assert_eq!(cache.descriptors(), 1);
        std::thread::sleep(Duration::from_millis(80));
        cache.sweep();
        assert_eq!(cache.descriptors(), 0);
        assert!(FileCache::new(&CacheConfig {
            valid_ms: 0,
            ..CacheConfig::default()
        })
        .is_none());
    }
}
