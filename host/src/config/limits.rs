//! `[transfer]`, `[cache]` and `[limits]`: the transfer engine's settings,
//! the host's caches and the bounds that hold for the whole process.

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// Transfer-engine settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct TransferConfig {
    pub chunk_min: ByteSize,
    pub chunk_max: ByteSize,
    pub chunk_default: ByteSize,
    pub sendfile_max_chunk: ByteSize,
    /// Bodies up to this size whose bytes are all in the page cache are read
    /// into memory and leave with the head in one write: for a small file that
    /// is cheaper than corking, `sendfile` and uncorking. 0 turns it off.
    pub inline_max: ByteSize,
    /// Allow zero-copy at all (a policy can only narrow this).
    pub zero_copy: bool,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            chunk_min: ByteSize(16 << 10),
            chunk_max: ByteSize(8 << 20),
            chunk_default: ByteSize(256 << 10),
            sendfile_max_chunk: ByteSize(2 << 20),
            inline_max: ByteSize(16 << 10),
            zero_copy: true,
        }
    }
}

/// The host's caches (see `resolve::cache` and `decision::reuse`): each site
/// has a share of one host-wide cache of each kind (`shared_cache`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Request paths whose lookup (open descriptors, siblings, index) is kept,
    /// per site (nginx: `open_file_cache max=`).
    pub open_files: usize,
    /// Descriptors the open-file caches of all sites hold together; 0 (the
    /// default) is a quarter of the descriptor limit, at most 65,536 (see
    /// `descriptors`). A cached absence counts as one.
    pub descriptors: u64,
    /// How long a cached lookup is trusted before the path is walked again
    /// (nginx: `open_file_cache_valid`); 0 turns the open-file cache off.
    pub valid_ms: u64,
    /// Bytes of reusable decisions kept per site (per loaded policy); 0
    /// turns the decision cache off.
    pub decisions: ByteSize,
    /// Bytes of reusable decisions kept for all sites together, whatever
    /// their number; 0 turns the decision cache off.
    pub decisions_total: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            open_files: 1024,
            descriptors: 0,
            valid_ms: 1000,
            decisions: ByteSize(4 << 20),
            decisions_total: ByteSize(64 << 20),
        }
    }
}

/// Bounds that hold for the whole process, whatever the number of
/// connections, streams and tenants.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Response-body bytes the process may hold in its own memory at once:
    /// chunks on the copying path (TLS, HTTP/2, compression), small files
    /// read whole, on-the-fly encoders' state. A body that finds it spent
    /// waits for its turn (see `transfer::budget`).
    pub body_memory: ByteSize,
    /// The most of `body-memory` one client connection may hold (at least
    /// one chunk is always let through, in turn): a few connections cannot
    /// take it all.
    pub body_memory_per_connection: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            body_memory: ByteSize(256 << 20),
            body_memory_per_connection: ByteSize(4 << 20),
        }
    }
}
