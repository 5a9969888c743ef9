//! Process-wide counters, read by benchmarks, tests and the admin endpoint.
//!
//! They are plain relaxed atomics: each is a running total, and nothing
//! synchronizes through them.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The counters.
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[$doc])* pub $name: AtomicU64,)* }

        impl Stats {
            /// `name value` lines, one per counter.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(out.push_str(&format!("{} {}\n", stringify!($name), self.$name.load(Ordering::Relaxed)));)*
                out
            }
        }
    };
}

counters! {
    /// Requests answered.
    requests,
    /// Body bytes sent by `sendfile(2)`.
    sendfile_bytes,
    /// `sendfile(2)` calls that sent at least one byte.
    sendfile_calls,
    /// File body bytes read into user space by the copying path.
    copy_bytes,
    /// Reads made by the copying path.
    copy_reads,
    /// File body bytes of small responses read into memory and sent with the head.
    inline_bytes,
    /// Transfers cut short because the file shrank while being sent.
    truncated_files,
    /// Policy `decide` calls.
    policy_calls,
    /// Requests answered with a reusable decision from the cache, without a policy call.
    decision_cache_hits,
    /// Lookups answered by the open-file cache, without a path walk.
    open_file_hits,
    /// Policy instances created (instantiate + configure).
    policy_instances,
    /// Policy calls that trapped (including deadline and memory faults).
    policy_traps,
    /// Decisions rejected by validation.
    invalid_decisions,
    /// Successful policy reloads.
    reloads,
    /// Refused policy reloads.
    reload_failures,
}

static STATS: std::sync::LazyLock<Stats> = std::sync::LazyLock::new(Stats::default);

/// The process-wide counters.
pub fn get() -> &'static Stats {
    &STATS
}

/// Adds `n` to a counter.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
