//! Kernel-enforced resolution beneath the root.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A lookup failed because the process (EMFILE) or the system (ENFILE) has
/// no descriptor left: not an answer about the path, so never "missing" and
/// never cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no file descriptor left: {0}")]
pub struct NoDescriptors(pub rustix::io::Errno);

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
    /// `None` for anything else (including every error about the path, which
    /// the caller reports uniformly as "missing"); an error for want of a
    /// descriptor is not about the path, and is returned as such.
    pub(super) fn open_node(
        &self,
        relative: &str,
    ) -> Result<Option<(OwnedFd, rustix::fs::Stat)>, NoDescriptors> {
        let fd = match self.open_beneath(relative) {
            Ok(fd) => fd,
            Err(e @ (rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => {
                return Err(NoDescriptors(e))
            }
            Err(e) => {
                if e == rustix::io::Errno::XDEV || e == rustix::io::Errno::LOOP {
                    tracing::debug!(path = relative, error = %e, "refused a path resolving outside the root");
                }
                return Ok(None);
            }
        };
        Ok(rustix::fs::fstat(&fd).ok().map(|stat| (fd, stat)))
    }

    fn open_file(&self, relative: &str) -> Result<Option<OpenedFile>, NoDescriptors> {
        Ok(self.open_node(relative)?.and_then(|(fd, stat)| {
            (FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile)
                .then(|| opened(fd, &stat))
        }))
    }

    fn found_file(
        &self,
        relative: &str,
        file: OpenedFile,
        codings: &[Coding],
    ) -> Result<FoundFile, NoDescriptors> {
        let mut siblings = Vec::new();
        for &c in codings {
            if let Some(sibling) = self.open_file(&format!("{relative}{}", c.suffix()))? {
                siblings.push((c, sibling));
            }
        }
        Ok(FoundFile { file, siblings })
    }

    /// Looks up a normalized path: opens it, and for a file its siblings in
    /// `codings`, for a directory the first of `index_names` present. Fails
    /// only when a descriptor could not be had (and then holds none).
    pub fn lookup(
        &self,
        relative: &str,
        index_names: &[String],
        codings: &[Coding],
    ) -> Result<Found, NoDescriptors> {
        let Some((fd, stat)) = self.open_node(relative)? else {
            return Ok(Found::Missing);
        };
        Ok(match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {
                Found::File(self.found_file(relative, opened(fd, &stat), codings)?)
            }
            FileType::Directory => {
                drop(fd);
                // The policy's capabilities were checked at load: each name
                // is one plain file name.
                let mut index = None;
                for name in index_names {
                    let path = if relative == "." {
                        name.clone()
                    } else {
                        format!("{relative}/{name}")
                    };
                    if let Some(file) = self.open_file(&path)? {
                        index = Some((name.clone(), self.found_file(&path, file, codings)?));
                        break;
                    }
                }
                Found::Directory { index }
            }
            _ => Found::Missing,
        })
    }
}

impl OpenedFile {
    /// The same descriptor with its metadata read again, or `None` when the
    /// file is no longer what its path names: unlinked or renamed over
    /// (`st_nlink` 0), or not a regular file any more.
    pub(crate) fn refreshed(&self) -> Option<OpenedFile> {
        let stat = rustix::fs::fstat(&*self.file).ok()?;
        if stat.st_nlink == 0 || FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return None;
        }
        Some(OpenedFile {
            file: self.file.clone(),
            meta: meta(&stat),
        })
    }
}

impl FoundFile {
    fn refreshed(&self) -> Option<FoundFile> {
        Some(FoundFile {
            file: self.file.refreshed()?,
            siblings: self
                .siblings
                .iter()
                .map(|(c, s)| Some((*c, s.refreshed()?)))
                .collect::<Option<_>>()?,
        })
    }
}

impl Found {
    /// What a cached lookup says now: every descriptor's metadata read again
    /// (a file changed in place shows its new size and time), or `None` when
    /// any of them no longer names what it did (the path must be walked again).
    pub(crate) fn refreshed(&self) -> Option<Found> {
        Some(match self {
            Found::Missing => Found::Missing,
            Found::File(f) => Found::File(f.refreshed()?),
            Found::Directory { index } => Found::Directory {
                index: match index {
                    Some((name, f)) => Some((name.clone(), f.refreshed()?)),
                    None => None,
                },
            },
        })
    }

    /// Descriptors this lookup holds open.
    pub(crate) fn descriptors(&self) -> usize {
        match self {
            Found::Missing | Found::Directory { index: None } => 0,
            Found::File(f)
            | Found::Directory {
                index: Some((_, f)),
            } => 1 + f.siblings.len(),
        }
    }
}

// `stat` field types differ between targets (e.g. 32-bit `time_t`), so the
// casts are needed somewhere even where they are no-ops.
#[allow(clippy::unnecessary_cast)]
pub(super) fn meta(stat: &rustix::fs::Stat) -> FileMeta {
    FileMeta {
        size: stat.st_size as u64,
        mtime_ns: (stat.st_mtime as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(stat.st_mtime_nsec as i64),
        inode: stat.st_ino as u64,
        device: stat.st_dev as u64,
    }
}

fn opened(fd: OwnedFd, stat: &rustix::fs::Stat) -> OpenedFile {
    OpenedFile {
        file: Arc::new(File::from(fd)),
        meta: meta(stat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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
        assert!(matches!(
            root.lookup("abs", &[], &codings),
            Ok(Found::Missing)
        ));
        assert!(matches!(
            root.lookup("rel", &[], &codings),
            Ok(Found::Missing)
        ));
        match root.lookup("a.txt", &[], &codings).unwrap() {
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
            Ok(Found::File(_))
        ));
    }
}
