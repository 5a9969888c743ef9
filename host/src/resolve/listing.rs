//! Directory listings for policies that render them (WIT 0.3 "Listings").
//!
//! A listing is the first `max` entries of a directory by name (byte
//! order), with `truncated` when there were more. The directory is read as
//! a stream (`getdents64` through rustix's [`Dir`], whose buffer is a few
//! KiB), and only the `max` smallest names seen so far are kept, in a
//! max-heap: a name is pushed and, when the heap then holds `max + 1`, the
//! largest is dropped. So a directory of a million entries costs the
//! memory of `max + 1` names (at most 10,000: `MAX_LISTING`), and the
//! reading stops after `MAX_SCAN` entries (then `truncated` is set: the
//! WIT allows the host to stop early). Only names that are UTF-8 and not
//! `.` or `..` count; others are skipped, as the WIT says.
//!
//! Each kept entry is then resolved as a request for it would be:
//! regular files, directories and symbolic links are opened beneath the
//! root (a link leaving it, dangling, or naming something unreadable is
//! `other`), one descriptor at a time; special files (sockets, devices,
//! FIFOs) are never opened, only `lstat`ed, and are `other`. An `other`
//! entry tells nothing: size and time 0.
//!
//! The reading is blocking work (up to `MAX_SCAN` entries, then up to
//! 10,000 opens): the handler runs it on tokio's blocking pool
//! (`handler::listing`), and stops it early when the request it was for is
//! gone (`abandoned`).

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, Dir, FileType};

use super::open::{meta, Root};
use super::NoDescriptors;
use crate::contract::wit;

/// Most directory entries read for one listing; past it the listing is
/// `truncated`, whatever it holds. A directory this large costs one
/// request about 20 ms of `getdents64`; the bound keeps a larger one from
/// costing more.
pub const MAX_SCAN: usize = 1 << 18;

/// Entries read between two looks at `abandoned` while scanning (a few
/// hundred microseconds of `getdents64`).
const CHECK_EVERY: usize = 1024;

impl Root {
    /// The listing of the directory at `relative` (normalized, beneath the
    /// root): at most `max` entries (`max` > 0, already clamped to
    /// `MAX_LISTING`). `None` when it is no longer a readable directory, or
    /// when `abandoned` was set while reading (nobody wants it any more).
    pub fn listing(
        &self,
        relative: &str,
        max: u32,
        abandoned: &AtomicBool,
    ) -> Result<Option<wit::Listing>, NoDescriptors> {
        let Some((fd, stat)) = self.open_node(relative)? else {
            return Ok(None);
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return Ok(None);
        }
        let Ok(mut dir) = Dir::read_from(&fd) else {
            return Ok(None);
        };
        let max = max as usize;
        let mut kept: BinaryHeap<String> = BinaryHeap::with_capacity(max.min(1024) + 1);
        let mut truncated = false;
        let mut scanned = 0usize;
        while let Some(entry) = dir.read() {
            let Ok(entry) = entry else {
                // An I/O error mid-read: what was read is what is known.
                truncated = true;
                break;
            };
            scanned += 1;
            if scanned.is_multiple_of(CHECK_EVERY) && abandoned.load(Relaxed) {
                return Ok(None);
            }
            if scanned > MAX_SCAN {
                truncated = true;
                break;
            }
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            // Only a name that would be kept is copied.
            if kept.len() == max && kept.peek().is_some_and(|largest| name >= largest.as_str()) {
                truncated = true;
                continue;
            }
            kept.push(name.to_owned());
            if kept.len() > max {
                kept.pop();
                truncated = true;
            }
        }
        drop(dir);
        let names = kept.into_sorted_vec();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            if abandoned.load(Relaxed) {
                return Ok(None);
            }
            let path = if relative == "." {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            let (kind, size, mtime_ns) = self.kind(&fd, &name, &path)?;
            entries.push(wit::ListingEntry {
                name,
                kind,
                size,
                mtime_ns,
            });
        }
        Ok(Some(wit::Listing { entries, truncated }))
    }

    /// What `name` in the directory `dir` (`relative` from the root) is,
    /// as a request for it would resolve it.
    fn kind(
        &self,
        dir: &OwnedFd,
        name: &str,
        relative: &str,
    ) -> Result<(wit::EntryKind, u64, i64), NoDescriptors> {
        const OTHER: (wit::EntryKind, u64, i64) = (wit::EntryKind::Other, 0, 0);
        let plain = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|s| {
            matches!(
                FileType::from_raw_mode(s.st_mode),
                FileType::RegularFile | FileType::Directory | FileType::Symlink
            )
        });
        if !plain {
            return Ok(OTHER);
        }
        let Some((_fd, stat)) = self.open_node(relative)? else {
            return Ok(OTHER);
        };
        let m = meta(&stat);
        Ok(match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => (wit::EntryKind::File, m.size, m.mtime_ns),
            FileType::Directory => (wit::EntryKind::Directory, m.size, m.mtime_ns),
            _ => OTHER,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing someone still waits for.
    static WANTED: AtomicBool = AtomicBool::new(false);

    fn names(l: &wit::Listing) -> Vec<&str> {
        l.entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn the_first_names_in_byte_order_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "B", "é", "c.txt", ".hidden", "z z"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let all = root.listing(".", 100, &WANTED).unwrap().unwrap();
        assert_eq!(
            names(&all),
            [".hidden", "B", "a", "b", "c.txt", "sub", "z z", "é"]
        );
        assert!(!all.truncated);
        let a = &all.entries[2];
        assert_eq!((a.kind, a.size), (wit::EntryKind::File, 1));
        assert!(a.mtime_ns > 0);
        assert_eq!(all.entries[5].kind, wit::EntryKind::Directory);
        for max in [1, 3, 7] {
            let l = root.listing(".", max, &WANTED).unwrap().unwrap();
            assert_eq!(names(&l), names(&all)[..max as usize], "{max}");
            assert!(l.truncated, "{max}");
        }
        let exact = root.listing(".", 8, &WANTED).unwrap().unwrap();
        assert!(!exact.truncated);
        // Not a directory, or not there: no listing.
        assert!(root.listing("a", 10, &WANTED).unwrap().is_none());
        assert!(root.listing("nope", 10, &WANTED).unwrap().is_none());
        assert_eq!(
            names(&root.listing("sub", 10, &WANTED).unwrap().unwrap()),
            [""; 0]
        );
    }

    #[test]
    fn kinds_are_what_a_request_would_find() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("file"), "12345").unwrap();
        symlink("file", p.join("link-in")).unwrap();
        symlink(outside.path().join("secret"), p.join("link-out")).unwrap();
        symlink("nowhere", p.join("dangling")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(p.join("socket")).unwrap();
        // Not UTF-8: skipped.
        std::fs::write(p.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
        let root = Root::open(p).unwrap();
        let l = root.listing(".", 100, &WANTED).unwrap().unwrap();
        let got: Vec<(&str, wit::EntryKind, u64)> = l
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind, e.size))
            .collect();
        use wit::EntryKind::*;
        assert_eq!(
            got,
            [
                ("dangling", Other, 0),
                ("fifo", Other, 0),
                ("file", File, 5),
                ("link-in", File, 5),
                ("link-out", Other, 0),
                ("socket", Other, 0),
            ]
        );
        assert!(l
            .entries
            .iter()
            .all(|e| (e.kind == Other) == (e.mtime_ns == 0)));
        assert!(!l.truncated);
    }

    #[test]
    fn an_abandoned_listing_stops() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 * CHECK_EVERY {
            std::fs::write(dir.path().join(format!("f{i}")), "").unwrap();
        }
        let root = Root::open(dir.path()).unwrap();
        let l = root.listing(".", 10, &WANTED).unwrap().unwrap();
        assert_eq!(l.entries.len(), 10);
        let gone = AtomicBool::new(true);
        assert!(root.listing(".", 10, &gone).unwrap().is_none());
    }
}
