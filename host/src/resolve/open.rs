//! Kernel-enforced resolution beneath the root.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::coding::Coding;

/// Why the root directory cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot open root directory {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("root {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("this kernel lacks openat2(2) (Linux 5.6+), which sluice needs to keep paths beneath the root")]
    NoOpenat2,
}

/// Metadata of an opened regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub device: u64,
}

/// A regular file, open for reading, with the metadata read from its descriptor.
#[derive(Debug, Clone)]
pub struct OpenedFile {
    pub file: Arc<File>,
    pub meta: FileMeta,
}

/// A file with the precompressed siblings found next to it.
#[derive(Debug, Clone)]
pub struct FoundFile {
    pub file: OpenedFile,
    pub siblings: Vec<(Coding, OpenedFile)>,
}

impl FoundFile {
    /// The sibling stored in `coding`, if it was found.
    pub fn sibling(&self, coding: Coding) -> Option<&OpenedFile> {
        self.siblings
            .iter()
            .find(|(c, _)| *c == coding)
            .map(|(_, f)| f)
    }
}

/// What a request path names.
#[derive(Debug, Clone)]
pub enum Found {
    /// Nothing servable (absent, special, unreadable, or outside the root).
    Missing,
    File(FoundFile),
    Directory {
        index: Option<(String, FoundFile)>,
    },
}

/// The served directory, held open so resolution is relative to it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    absent: Mutex<HashMap<String, Absent>>,
}

/// How long the absence of a precompressed sibling is remembered. Probing
/// `.br`, `.zst` and `.gz` costs a failing `openat2` path walk each, which is
/// most of the file-system work of a small-file request; remembering "none
/// here" for a second (nginx: `open_file_cache_errors`) removes it. Only
/// absence is cached: a sibling that exists is opened, and `fstat`ed, every
/// time, so nothing stale is ever served; a new sibling shows up within a
/// second.
const ABSENCE_TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; the cache is simply emptied when full.
const ABSENCE_MAX: usize = 8192;

/// Sibling codings found absent at a path, and when.
#[derive(Debug, Clone, Copy)]
struct Absent {
    since: Instant,
    codings: u8,
}

/// Flags for every open: read-only; non-blocking so a FIFO planted in the root
/// cannot stall a worker; no controlling terminal.
const OPEN_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY)
    .union(OFlags::NONBLOCK);

/// Stay beneath the root (the kernel refuses `..` and symlinks that leave it,
/// and absolute symlinks) and never follow /proc-style magic links.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens `path` as the root to serve.
    pub fn open(path: &Path) -> Result<Root, RootError> {
        let open_err = |source| RootError::Open {
            path: path.to_owned(),
            source,
        };
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| open_err(e.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| open_err(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return Err(RootError::NotADirectory(path.to_owned()));
        }
        let root = Root {
            fd,
            path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
            absent: Mutex::new(HashMap::new()),
        };
        match root.open_beneath(".") {
            Err(rustix::io::Errno::NOSYS) => Err(RootError::NoOpenat2),
            _ => Ok(root),
        }
    }

    /// The root's path, for log lines.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_beneath(&self, relative: &str) -> Result<OwnedFd, rustix::io::Errno> {
        loop {
            match rustix::fs::openat2(&self.fd, relative, OPEN_FLAGS, Mode::empty(), RESOLVE) {
                // RESOLVE_BENEATH lookups may fail with EAGAIN when a rename races
                // them; retrying is what the man page asks for.
                Err(rustix::io::Errno::AGAIN) => continue,
                other => return other,
            }
        }
    }

    /// Opens `relative` beneath the root: a regular file or a directory, or
    /// `None` for anything else (including every error, which the caller reports
    /// uniformly as "missing").
    fn open_node(&self, relative: &str) -> Option<(OwnedFd, rustix::fs::Stat)> {
        let fd = match self.open_beneath(relative) {
            Ok(fd) => fd,
            Err(e) => {
                if e == rustix::io::Errno::XDEV || e == rustix::io::Errno::LOOP {
                    tracing::debug!(path = relative, error = %e, "refused a path resolving outside the root");
                }
                return None;
            }
        };
        let stat = rustix::fs::fstat(&fd).ok()?;
        Some((fd, stat))
    }

    fn open_file(&self, relative: &str) -> Option<OpenedFile> {
        let (fd, stat) = self.open_node(relative)?;
        (FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile).then(|| opened(fd, &stat))
    }

    fn found_file(&self, relative: &str, file: OpenedFile, codings: &[Coding]) -> FoundFile {
        if codings.is_empty() {
            return FoundFile {
                file,
                siblings: Vec::new(),
            };
        }
        let now = Instant::now();
        let known_absent = self
            .absent
            .lock()
            .expect("not poisoned")
            .get(relative)
            .filter(|a| now.duration_since(a.since) < ABSENCE_TTL)
            .map_or(0, |a| a.codings);
        let mut newly_absent = 0;
        let siblings = codings
            .iter()
            .filter(|c| known_absent & c.bit() == 0)
            .filter_map(
                |&c| match self.open_file(&format!("{relative}{}", c.suffix())) {
                    Some(f) => Some((c, f)),
                    None => {
                        newly_absent |= c.bit();
                        None
                    }
                },
            )
            .collect();
        if newly_absent != 0 {
            let mut cache = self.absent.lock().expect("not poisoned");
            if cache.len() >= ABSENCE_MAX {
                cache.clear();
            }
            let entry = cache.entry(relative.to_owned()).or_insert(Absent {
                since: now,
                codings: 0,
            });
            if now.duration_since(entry.since) >= ABSENCE_TTL {
                *entry = Absent {
                    since: now,
                    codings: 0,
                };
            }
            entry.codings |= newly_absent;
        }
        FoundFile { file, siblings }
    }

    /// Looks up a normalized path: opens it, and for a file its siblings in
    /// `codings`, for a directory the first of `index_names` present.
    pub fn lookup(&self, relative: &str, index_names: &[String], codings: &[Coding]) -> Found {
        let Some((fd, stat)) = self.open_node(relative) else {
            return Found::Missing;
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {
                Found::File(self.found_file(relative, opened(fd, &stat), codings))
            }
            FileType::Directory => {
                drop(fd);
                let index = index_names
                    .iter()
                    .filter(|n| valid_name(n))
                    .find_map(|name| {
                        let path = if relative == "." {
                            name.clone()
                        } else {
                            format!("{relative}/{name}")
                        };
                        let file = self.open_file(&path)?;
                        Some((name.clone(), self.found_file(&path, file, codings)))
                    });
                Found::Directory { index }
            }
            _ => Found::Missing,
        }
    }
}

/// An index name must be one plain file name.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

// `stat` field types differ between targets (e.g. 32-bit `time_t`), so the
// casts are needed somewhere even where they are no-ops.
#[allow(clippy::unnecessary_cast)]
fn opened(fd: OwnedFd, stat: &rustix::fs::Stat) -> OpenedFile {
    OpenedFile {
        file: Arc::new(File::from(fd)),
        meta: FileMeta {
            size: stat.st_size as u64,
            mtime_ns: (stat.st_mtime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(stat.st_mtime_nsec as i64),
            inode: stat.st_ino as u64,
            device: stat.st_dev as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn sibling_absence_is_remembered_briefly_and_presence_never() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        let siblings = |root: &Root| match root.lookup("a.txt", &[], &[Coding::Gzip, Coding::Br]) {
            Found::File(f) => f.siblings.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert!(siblings(&root).is_empty());
        std::fs::write(dir.path().join("a.txt.gz"), "gz").unwrap();
        assert!(
            siblings(&root).is_empty(),
            "absence is remembered within the TTL"
        );
        std::thread::sleep(ABSENCE_TTL + Duration::from_millis(100));
        assert_eq!(
            siblings(&root),
            vec![Coding::Gzip],
            "and forgotten after it"
        );
        std::fs::remove_file(dir.path().join("a.txt.gz")).unwrap();
        assert!(
            siblings(&root).is_empty(),
            "a present sibling is probed every time"
        );
    }

    #[test]
    fn symlinks_leaving_the_root_are_missing() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("abs")).unwrap();
        symlink("../../../../../../etc/passwd", dir.path().join("rel")).unwrap();
        symlink(outside.path().join("secret"), dir.path().join("a.txt.gz")).unwrap();
        symlink("a.txt", dir.path().join("inside")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let codings = [Coding::Gzip];
        assert!(matches!(root.lookup("abs", &[], &codings), Found::Missing));
        assert!(matches!(root.lookup("rel", &[], &codings), Found::Missing));
        match root.lookup("a.txt", &[], &codings) {
            Found::File(f) => {
                assert_eq!(f.file.meta.size, 5);
                assert!(
                    f.siblings.is_empty(),
                    "a symlinked sibling leaving the root must not be offered"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            root.lookup("inside", &[], &codings),
            Found::File(_)
        ));
    }
}
