//! How the descriptor limit (`RLIMIT_NOFILE`) is shared out.
//!
//! Three things hold descriptors: the server itself (listeners, epoll, the
//! policies' engine, the log: [`RESERVED`]), the open-file caches of all
//! sites together (a budget, `[cache] descriptors`), and connections (a
//! socket each and, while sending, a file's descriptor: two per connection,
//! which bounds `max-connections`). The budget is taken first, so that the
//! caches can never take what connections need: when they are full they
//! evict (closing descriptors) rather than grow, and a request is served
//! with or without them.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept back for the server itself: listeners, the runtime's
/// epoll and wakers, the policies' engine, the log, the compile cache.
pub const RESERVED: u64 = 256;

/// The open-file caches' budget when none is configured: a quarter of the
/// limit, and at most this many (each is a kernel `struct file` pinning a
/// dentry and an inode; past tens of thousands of hot paths the page cache,
/// not the descriptor cache, is what serves).
pub const AUTO_CACHE_MAX: u64 = 65_536;

/// Raises the soft descriptor limit to the hard one, as nginx's
/// `worker_rlimit_nofile` would: every connection and every open-file cache
/// entry holds descriptors, and the usual soft default (1024) is far below
/// what a busy server needs. Returns the limit in force (`None`:
/// unlimited).
pub fn raise_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
        }
    }
    limit.current
}

/// The descriptor limit in force (`None`: unlimited).
pub fn limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// The descriptors the open-file caches may hold together: `configured`
/// (`[cache] descriptors`), or for 0 a quarter of `limit` (at most
/// [`AUTO_CACHE_MAX`]); never more than half of what the limit leaves after
/// [`RESERVED`], so connections keep the other half.
pub fn cache_budget(configured: u64, limit: Option<u64>) -> u64 {
    let Some(limit) = limit else {
        return if configured == 0 {
            AUTO_CACHE_MAX
        } else {
            configured
        };
    };
    let most = limit.saturating_sub(RESERVED) / 2;
    match configured {
        0 => (limit / 4).min(AUTO_CACHE_MAX).min(most),
        n => n.min(most),
    }
}

/// `max-connections`, lowered to what the descriptor limit can hold once the
/// open-file caches' budget (`cache`) and [`RESERVED`] are taken. A
/// connection holds its socket and, while it sends a file, that file's
/// descriptor (up to four with precompressed siblings, but mostly shared
/// through the open-file cache): two per connection keeps `accept` from
/// failing with EMFILE at the cap, which would leave clients half-served.
pub fn fit_connections(max: usize, limit: Option<u64>, cache: u64) -> usize {
    let Some(fds) = limit else {
        return max; // unlimited
    };
    let fit = usize::try_from(fds.saturating_sub(RESERVED).saturating_sub(cache) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if fit < max {
        tracing::warn!(
            max_connections = max,
            descriptor_limit = fds,
            open_file_cache_descriptors = cache,
            lowered_to = fit,
            "max-connections is more than the descriptor limit can hold (two per connection, \
             after the open-file caches' budget); lowered"
        );
        return fit;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_share_of_the_limit_and_connections_get_the_rest() {
        // The outside test's limit: a quarter for the caches, the rest (less
        // the reserve) two per connection.
        assert_eq!(cache_budget(0, Some(4096)), 1024);
        assert_eq!(fit_connections(10_000, Some(4096), 1024), 1408);
        // Caches and connections together never exceed the limit.
        for limit in [300, 1024, 4096, 65_536, 1 << 20] {
            let cache = cache_budget(0, Some(limit));
            let conns = fit_connections(usize::MAX, Some(limit), cache) as u64;
            assert!(
                RESERVED + cache + 2 * conns <= limit.max(RESERVED + 2),
                "{limit}"
            );
        }
        // Capped when the limit is huge or absent; a configured budget is
        // kept if the limit leaves room for it, else lowered to half.
        assert_eq!(cache_budget(0, Some(1 << 24)), AUTO_CACHE_MAX);
        assert_eq!(cache_budget(0, None), AUTO_CACHE_MAX);
        assert_eq!(cache_budget(500, Some(4096)), 500);
        assert_eq!(cache_budget(100_000, Some(4096)), (4096 - RESERVED) / 2);
        assert_eq!(fit_connections(100, None, 0), 100);
    }
}
