//! Process-wide counters, read by benchmarks, tests and the admin endpoint,
//! which renders them (`admin/metrics.rs`: `GET /stats`, one `name value`
//! line each; `GET /metrics`, the Prometheus text format).
//!
//! They are plain relaxed atomics: each is a running total, and nothing
//! synchronizes through them. What a counter is labelled by is a type of
//! this module ([`Fault`], [`BodyPath`]), so a label is named in one place.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The counters.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Wall time of policy `decide` calls.
            pub policy_latency: Histogram,
            /// Policy calls that failed, by kind of fault ([`Stats::fault`]).
            faults: [AtomicU64; Fault::ALL.len()],
            /// Client connections open now.
            pub connections: AtomicI64,
            /// The cap on client connections (`max-connections`).
            pub max_connections: AtomicU64,
        }

        impl Stats {
            /// Every plain counter with its name (the `/stats` line's).
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($name), &self.$name),)*]
                    .into_iter()
                    .map(|(name, c)| (name, c.load(Ordering::Relaxed)))
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
    /// Descriptors the open-file caches closed early because the process had
    /// none left to open a file or accept a connection with.
    open_file_releases,
    /// Requests answered 503 because no descriptor was left to open their
    /// file, even after the open-file caches gave theirs back.
    no_descriptors,
    /// `accept(2)` failures (out of descriptors, mostly); each pauses the
    /// listener.
    accept_errors,
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
    /// Components compiled from their bytes.
    policy_compiles,
    /// Policy loads that reused a component already compiled from identical bytes.
    compiled_shared,
    /// Compiled components loaded from the on-disk cache instead of compiled.
    compiled_cache_loads,
    /// On-disk cache files refused (corrupt, another engine) and compiled again.
    compiled_cache_rejects,
    /// Policy loads that reused a policy already configured with the same component, settings and limits.
    policies_shared,
    /// Idle policy instances dropped after going unused for 10 s.
    instances_reclaimed,
    /// Idle policy instances dropped, least recently used first, to free a
    /// pool slot for another site or keep idle instances within `idle-memory`.
    instances_evicted,
    /// TLS certificates (with their keys) read again on reload and swapped in.
    certificate_reloads,
    /// TLS certificates refused on reload (the old one kept serving).
    certificate_reload_failures,
    /// Accepted clients that found every connection slot taken and waited
    /// for one to close (`max-connections`).
    connection_cap_waits,
    /// Idle HTTP/1 connections parked: hyper's state (its buffers) dropped
    /// until the client's next bytes (`connection::serve_http1`).
    parked_connections,
    /// Times the park timer woke an HTTP/1 connection's task and did not
    /// park it (it had not been idle for `park-idle-ms`): wake-ups a
    /// connection that is never parked should not cost.
    park_checks,
    /// Times a response body found the host-wide body budget spent and
    /// waited for its turn (`[limits] body-memory`).
    body_budget_waits,
    /// HTTP/2 streams reset because the client granted them no window for
    /// the send timeout.
    h2_streams_stalled,
    /// QUIC connections whose handshake completed (HTTP/3).
    h3_connections,
    /// Requests answered over HTTP/3.
    h3_requests,
    /// HTTP/3 streams reset because the client took nothing of a chunk for
    /// the send timeout.
    h3_streams_stalled,
    /// QUIC clients asked to prove their address (Retry) because many
    /// handshakes were in progress (`[http3] retry-handshakes`).
    quic_retries,
    /// QUIC connection attempts refused because every slot was taken
    /// (`max-connections` or `[http3] max-connections`).
    quic_refused,
    /// QUIC handshakes that failed or timed out.
    quic_handshake_failures,
}

/// The kinds of policy fault counted (`policy::CallError::fault` says
/// which a failed call was); each is a `kind` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Deadline,
    Warmup,
    WallClock,
    Memory,
    Table,
    Stack,
    Trap,
    Instantiate,
    Pool,
}

impl Fault {
    /// Every kind, in the order of their counters (and of `/metrics`).
    pub const ALL: [Fault; 9] = [
        Fault::Deadline,
        Fault::Warmup,
        Fault::WallClock,
        Fault::Memory,
        Fault::Table,
        Fault::Stack,
        Fault::Trap,
        Fault::Instantiate,
        Fault::Pool,
    ];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Deadline => "deadline",
            Fault::Warmup => "warmup",
            Fault::WallClock => "wall_clock",
            Fault::Memory => "memory",
            Fault::Table => "table",
            Fault::Stack => "stack",
            Fault::Trap => "trap",
            Fault::Instantiate => "instantiate",
            Fault::Pool => "pool",
        }
    }
}

/// Which counter a response's file body bytes go to: the `path` label of
/// `sluice_body_bytes_total` (the transfer engine maps its own paths onto
/// it: a compressed body's bytes are read by the copying path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPath {
    Sendfile,
    Copy,
    Inline,
}

impl BodyPath {
    /// Every path, in the order of `/metrics`.
    pub const ALL: [BodyPath; 3] = [BodyPath::Sendfile, BodyPath::Copy, BodyPath::Inline];

    /// The `path` label.
    pub fn name(self) -> &'static str {
        match self {
            BodyPath::Sendfile => "sendfile",
            BodyPath::Copy => "copy",
            BodyPath::Inline => "inline",
        }
    }
}

/// Upper bounds of the policy-latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// A latency histogram with fixed buckets (Prometheus' cumulative `le`
/// buckets are computed when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket, the last one for everything above the bounds.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros();
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= u128::from(b))
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Each bucket's upper bound in microseconds (`None`: above every
    /// bound) and its observations, not cumulative.
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        BUCKETS_US
            .iter()
            .map(|&b| Some(b))
            .chain([None])
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
    }

    /// The sum of every observation, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Ordering::Relaxed)
    }
}

/// What the host-wide caches hold now against their bounds (gauges).
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheUsage {
    /// Bytes of every site's reusable decisions (`[cache] decisions-total`).
    pub decision_bytes: u64,
    pub decision_bytes_limit: u64,
    pub decision_entries: u64,
    /// Descriptors held by every site's open-file cache (`[cache] descriptors`).
    pub open_file_descriptors: u64,
    pub open_file_descriptors_limit: u64,
}

/// Responses of one site by status class (`1xx` … `5xx`).
#[derive(Debug, Default)]
pub struct SiteCounters {
    by_class: [AtomicU64; 5],
}

impl SiteCounters {
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses so far by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed))
    }
}

impl Stats {
    /// The counter of one kind of policy fault.
    pub fn fault(&self, kind: Fault) -> &AtomicU64 {
        &self.faults[kind as usize]
    }

    /// The counter of file body bytes sent by one path.
    pub fn body_bytes(&self, path: BodyPath) -> &AtomicU64 {
        match path {
            BodyPath::Sendfile => &self.sendfile_bytes,
            BodyPath::Copy => &self.copy_bytes,
            BodyPath::Inline => &self.inline_bytes,
        }
    }
}

/// Counts a client connection as open until dropped.
pub struct Connection(());

impl Connection {
    pub fn open() -> Connection {
        get().connections.fetch_add(1, Ordering::Relaxed);
        Connection(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        get().connections.fetch_sub(1, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Stats::fault` indexes by discriminant: `ALL` must list every kind
    /// in that order, once.
    #[test]
    fn every_fault_has_its_own_counter() {
        for (i, kind) in Fault::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?}");
        }
        let stats = Stats::default();
        add(stats.fault(Fault::Pool), 1);
        let counted: Vec<u64> = Fault::ALL
            .iter()
            .map(|k| stats.fault(*k).load(Ordering::Relaxed))
            .collect();
        assert_eq!(counted, [0, 0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
