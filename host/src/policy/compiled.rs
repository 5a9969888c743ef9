//! Compiled components, shared between sites and kept between starts.
//!
//! Compiling is the costly step of loading a policy (Cranelift, tens to
//! hundreds of milliseconds and a few hundred KiB of code), and its result
//! depends only on the component's bytes and the engine. So:
//!
//! - identical bytes compile once per process: [`Components`] maps the
//!   SHA-256 of the bytes to the compiled, linked component, held weakly so
//!   that one no policy uses any more (after a reload) is freed;
//! - with a cache directory (`compile-cache`), the compiled code is written
//!   to disk and loaded at the next start instead of compiled again.
//!
//! # Why loading a cached file is sound
//!
//! `Component::deserialize` is `unsafe`: the bytes are taken as native code
//! and metadata without validation, so they must be what wasmtime wrote.
//! A file is only loaded when all of these hold:
//!
//! - the directory is ours: owned by this process's effective user and not
//!   writable by group or others (checked when the cache is opened), so no
//!   other unprivileged user can have put a file there;
//! - the file starts with our header: magic, the engine's
//!   [`Engine::precompile_compatibility_hash`] (target, compiler flags,
//!   tunables, wasm features, wasmtime version), the SHA-256 of the source
//!   bytes it was compiled from (which must be the ones being loaded), and
//!   the SHA-256 of the compiled payload, which must match: a truncated,
//!   corrupted or half-written file is refused;
//! - the whole file is read into memory before it is checked and the checked
//!   bytes are the ones deserialized, so it cannot change in between;
//! - wasmtime itself checks its own header (version, target, flags) again.
//!
//! Files are written to a temporary file in the same directory and renamed
//! into place, so a reader sees a complete file or none. A refused file is
//! compiled again and overwritten; it is never loaded.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::error::LoadError;
use super::store::{HostState, Pre};
use super::wasi;
use crate::contract::wit;
use crate::policy_text::PolicyText;
use crate::stats;

/// The SHA-256 of a component's bytes.
pub type Key = [u8; 32];

/// The key of `bytes`.
pub fn key(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
}

/// A component compiled and linked against the host's imports: all a
/// policy needs to make instances.
pub(super) struct Compiled {
    pub(super) pre: Pre,
    /// The `sluice:policy` version it was built against.
    pub(super) version: &'static str,
}

/// Why the compiled cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    #[error("cannot create the compiled-policy cache {path} (`compile-cache`): {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the compiled-policy cache {path} (`compile-cache`) must be a directory owned by \
         this user and not writable by group or others"
    )]
    NotOurs { path: PathBuf },
}

/// The compiled components of one engine.
pub struct Components {
    live: Mutex<HashMap<Key, Weak<Compiled>>>,
    disk: Option<DiskCache>,
}

impl Components {
    pub fn new(disk: Option<DiskCache>) -> Components {
        Components {
            live: Mutex::new(HashMap::new()),
            disk,
        }
    }

    /// The compiled component of `bytes`: shared if these bytes are already
    /// compiled, else loaded from the disk cache, else compiled (and written
    /// to the disk cache).
    pub(super) fn get(&self, engine: &Engine, bytes: &[u8]) -> Result<Arc<Compiled>, LoadError> {
        let key = key(bytes);
        if let Some(shared) = self.lookup(&key) {
            stats::add(&stats::get().compiled_shared, 1);
            return Ok(shared);
        }
        // Not under the lock: compiling takes long, and two loads racing for
        // the same bytes at worst compile them twice.
        let cached = self.disk.as_ref().and_then(|d| d.load(engine, &key));
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(engine, bytes)
                    .map_err(|e| LoadError::Compile(format!("{e:#}").into()))?;
                stats::add(&stats::get().policy_compiles, 1);
                if let Some(disk) = &self.disk {
                    disk.store(&key, &c);
                }
                c
            }
        };
        let compiled = Arc::new(link(engine, component)?);
        let mut live = self.live.lock().expect("not poisoned");
        // Forget components nothing uses any more, so the map stays the size
        // of what is loaded across reloads.
        live.retain(|_, c| c.strong_count() > 0);
        live.insert(key, Arc::downgrade(&compiled));
        Ok(compiled)
    }

    fn lookup(&self, key: &Key) -> Option<Arc<Compiled>> {
        let live = self.live.lock().expect("not poisoned");
        live.get(key).and_then(Weak::upgrade)
    }
}

/// The package version a component was built against: the version of the
/// `sluice:policy/types` interface it imports (the world's functions use its
/// types, so every policy imports it).
fn package_version(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .find_map(|(name, _)| name.strip_prefix("sluice:policy/types@").map(str::to_owned))
}

/// Checks the version a component speaks and links it against the host.
fn link(engine: &Engine, component: Component) -> Result<Compiled, LoadError> {
    // A policy makes no HTTP requests, and no sluice host links wasi:http;
    // say what usually brings it in, rather than that a link failed.
    if let Some((name, _)) = component
        .component_type()
        .imports(engine)
        .find(|(name, _)| name.starts_with("wasi:http/"))
    {
        return Err(LoadError::WasiHttp(name.into()));
    }
    let found = package_version(engine, &component);
    let version = wit::SUPPORTED
        .iter()
        .copied()
        .find(|v| found.as_deref() == Some(*v))
        .ok_or_else(|| LoadError::Version {
            found: found.as_deref().map(PolicyText::from),
        })?;
    // Import and export names in the message are the component's own.
    let link = |e: wasmtime::Error| LoadError::Link {
        version,
        reason: format!("{e:#}").into(),
    };
    let mut linker = Linker::<HostState>::new(engine);
    // A std guest imports a dozen WASI interfaces even when it does no I/O;
    // they are linked against an empty context that grants nothing.
    // Those that could block the thread are replaced (see `wasi`).
    wasi::add_to_linker(&mut linker).map_err(link)?;
    let instance_pre = linker.instantiate_pre(&component).map_err(link)?;
    let pre = match version {
        "0.3.0" => Pre::V0_3(wit::v0_3::PolicyPre::new(instance_pre).map_err(link)?),
        "0.2.0" => Pre::V0_2(wit::v0_2::PolicyPre::new(instance_pre).map_err(link)?),
        _ => Pre::V0_1(wit::v0_1::PolicyPre::new(instance_pre).map_err(link)?),
    };
    Ok(Compiled { pre, version })
}

/// Start of every cache file (the format's version is its last byte).
const MAGIC: &[u8; 8] = b"sluice\x00\x01";
/// Magic, compatibility hash, source SHA-256, payload SHA-256.
const HEADER: usize = 8 + 8 + 32 + 32;

/// Compiled components on disk, one file per source hash.
pub struct DiskCache {
    dir: PathBuf,
    /// The engine's compatibility hash: a file written under another
    /// configuration or wasmtime is refused.
    compat: u64,
}

/// Why a cache file was refused (logged; the component is compiled again).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("too short or not a sluice cache file")]
    Format,
    #[error("written by another engine configuration or wasmtime version")]
    Engine,
    #[error("compiled from other bytes")]
    Source,
    #[error("its contents do not match their hash (corrupted or truncated)")]
    Corrupt,
    #[error("wasmtime refused it: {0:#}")]
    Wasmtime(wasmtime::Error),
}

impl DiskCache {
    /// Opens (creating it, mode 0700) the cache directory for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<DiskCache, CacheDirError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CacheDirError::Create {
                path: dir.to_owned(),
                source,
            })?;
        let meta = std::fs::symlink_metadata(dir).map_err(|source| CacheDirError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let ours = meta.is_dir()
            && meta.uid() == rustix::process::geteuid().as_raw()
            && meta.mode() & 0o022 == 0;
        if !ours {
            return Err(CacheDirError::NotOurs {
                path: dir.to_owned(),
            });
        }
        // `DefaultHasher::new` is the same function in every process built
        // by the same compiler; another build at worst misses the cache.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache {
            dir: dir.to_owned(),
            compat: hasher.finish(),
        })
    }

    fn path(&self, key: &Key) -> PathBuf {
        let mut name = String::with_capacity(2 * key.len() + 6);
        for b in key {
            name.push_str(&format!("{b:02x}"));
        }
        name.push_str(".cwasm");
        self.dir.join(name)
    }

    /// The cached component for `key`, if a sound file is there.
    fn load(&self, engine: &Engine, key: &Key) -> Option<Component> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a compiled-policy cache file; compiling");
                return None;
            }
        };
        match self.check(engine, key, &bytes) {
            Ok(c) => {
                stats::add(&stats::get().compiled_cache_loads, 1);
                tracing::debug!(path = %path.display(), "compiled policy loaded from the cache");
                Some(c)
            }
            Err(why) => {
                stats::add(&stats::get().compiled_cache_rejects, 1);
                tracing::warn!(path = %path.display(), reason = %why, "compiled-policy cache file refused; compiling again");
                None
            }
        }
    }

    fn check(&self, engine: &Engine, key: &Key, file: &[u8]) -> Result<Component, Refused> {
        if file.len() < HEADER || &file[..8] != MAGIC {
            return Err(Refused::Format);
        }
        let (header, payload) = file.split_at(HEADER);
        let compat = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if compat != self.compat {
            return Err(Refused::Engine);
        }
        if header[16..48] != key[..] {
            return Err(Refused::Source);
        }
        if header[48..80] != Sha256::digest(payload)[..] {
            return Err(Refused::Corrupt);
        }
        // SAFETY: see the module documentation: `payload` is, byte for byte,
        // what `Component::serialize` wrote for these source bytes under an
        // engine of this configuration, into a directory only we can write.
        unsafe { Component::deserialize(engine, payload) }.map_err(Refused::Wasmtime)
    }

    /// Writes `component` for `key`; failures are logged, not fatal (the
    /// next start compiles again).
    fn store(&self, key: &Key, component: &Component) {
        let write = || -> Result<(), Box<dyn std::error::Error>> {
            let payload = component.serialize()?;
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            tmp.write_all(MAGIC)?;
            tmp.write_all(&self.compat.to_le_bytes())?;
            tmp.write_all(key)?;
            tmp.write_all(&Sha256::digest(&payload))?;
            tmp.write_all(&payload)?;
            tmp.persist(self.path(key))?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write to the compiled-policy cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn engine() -> Engine {
        Engine::new(&super::super::engine::wasmtime_config(
            &SandboxConfig::default(),
        ))
        .unwrap()
    }

    #[test]
    fn a_cached_file_is_loaded_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let disk = DiskCache::open(dir.path(), &engine).unwrap();
        let bytes = super::super::prepared::DEFAULT_POLICY;
        let k = key(bytes);
        assert!(disk.load(&engine, &k).is_none(), "empty cache");
        disk.store(&k, &Component::new(&engine, bytes).unwrap());
        let file = std::fs::read(disk.path(&k)).unwrap();
        assert!(disk.check(&engine, &k, &file).is_ok());

        let refused = |f: &[u8]| disk.check(&engine, &k, f).err().unwrap();
        assert!(matches!(refused(&file[..40]), Refused::Format));
        let mut other = file.clone();
        other[8] ^= 1;
        assert!(matches!(refused(&other), Refused::Engine));
        let mut other = file.clone();
        other[20] ^= 1;
        assert!(matches!(refused(&other), Refused::Source));
        let mut other = file.clone();
        let last = other.len() - 1;
        other[last] ^= 1;
        assert!(matches!(refused(&other), Refused::Corrupt));
        assert!(matches!(refused(&file[..file.len() - 1]), Refused::Corrupt));
        // A cache another engine configuration wrote is not this one's.
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let other_engine = Engine::new(&config).unwrap();
        let other_disk = DiskCache::open(dir.path(), &other_engine).unwrap();
        assert_ne!(other_disk.compat, disk.compat);
        assert!(matches!(
            other_disk.check(&other_engine, &k, &file).err().unwrap(),
            Refused::Engine
        ));
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            DiskCache::open(dir.path(), &engine()),
            Err(CacheDirError::NotOurs { .. })
        ));
    }
}
