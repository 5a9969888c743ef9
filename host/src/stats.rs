//! Process-wide counters, read by benchmarks, tests and the admin endpoint
//! (`GET /stats`, one `name value` line each; `GET /metrics`, the Prometheus
//! text format with types, labels and a policy-latency histogram).
//!
//! They are plain relaxed atomics: each is a running total, and nothing
//! synchronizes through them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::transfer::TransferPath;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The counters.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Wall time of policy `decide` calls.
            pub policy_latency: Histogram,
            /// Policy calls that failed, by kind of fault (see [`FAULTS`]).
            pub faults: [AtomicU64; FAULTS.len()],
            /// Client connections open now.
            pub connections: AtomicI64,
            /// The cap on client connections (`max-connections`).
            pub max_connections: AtomicU64,
        }

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
    /// Times a response body found the host-wide body budget spent and
    /// waited for its turn (`[limits] body-memory`).
    body_budget_waits,
    /// HTTP/2 streams reset because the client granted them no window for
    /// the send timeout.
    h2_streams_stalled,
}

/// The kinds of policy fault counted (`policy::CallError::kind`).
pub const FAULTS: [&str; 9] = [
    "deadline",
    "warmup",
    "wall_clock",
    "memory",
    "table",
    "stack",
    "trap",
    "instantiate",
    "pool",
];

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

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
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

impl CacheUsage {
    fn gauges(&self) -> [(&'static str, &'static str, u64); 5] {
        [
            (
                "decision_cache_bytes",
                "Bytes the decision caches of all sites hold (keys, verdicts, the cache's own slots).",
                self.decision_bytes,
            ),
            (
                "decision_cache_bytes_limit",
                "The host-wide bound on decision-cache bytes ([cache] decisions-total).",
                self.decision_bytes_limit,
            ),
            (
                "decision_cache_entries",
                "Decisions cached, all sites together.",
                self.decision_entries,
            ),
            (
                "open_file_cache_descriptors",
                "Descriptors the open-file caches of all sites hold open.",
                self.open_file_descriptors,
            ),
            (
                "open_file_cache_descriptors_limit",
                "The host-wide bound on open-file cache descriptors ([cache] descriptors).",
                self.open_file_descriptors_limit,
            ),
        ]
    }

    /// `name value` lines, as [`Stats::render`].
    pub fn render(&self) -> String {
        self.gauges()
            .iter()
            .map(|(name, _, v)| format!("{name} {v}\n"))
            .collect()
    }
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
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Stats {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus<'a>(
        &self,
        sites: impl Iterator<Item = (&'a str, &'a SiteCounters)>,
        caches: &CacheUsage,
        open_fds: Option<usize>,
    ) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "sluice_requests_total",
            "counter",
            "Responses sent, by virtual host and status class.",
        );
        for (site, counters) in sites {
            for (i, n) in counters.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "sluice_requests_total{{vhost=\"{}\",class=\"{}xx\"}} {}",
                    label(site),
                    i + 1,
                    load(n)
                );
            }
        }
        family(
            &mut out,
            "sluice_body_bytes_total",
            "counter",
            "File body bytes sent, by transfer path.",
        );
        for (path, n) in [
            (TransferPath::Sendfile.name(), &self.sendfile_bytes),
            (TransferPath::Copy.name(), &self.copy_bytes),
            (TransferPath::Inline.name(), &self.inline_bytes),
        ] {
            let _ = writeln!(
                out,
                "sluice_body_bytes_total{{path=\"{path}\"}} {}",
                load(n)
            );
        }
        for (name, help, n) in [
            (
                "sluice_policy_calls_total",
                "Calls into a policy's decide.",
                &self.policy_calls,
            ),
            (
                "sluice_decision_cache_hits_total",
                "Requests answered from the decision cache without a policy call.",
                &self.decision_cache_hits,
            ),
            (
                "sluice_open_file_cache_hits_total",
                "Lookups answered by the open-file cache.",
                &self.open_file_hits,
            ),
            (
                "sluice_open_file_releases_total",
                "Descriptors the open-file caches closed early because the process had none left.",
                &self.open_file_releases,
            ),
            (
                "sluice_no_descriptors_total",
                "Requests answered 503 because no descriptor was left to open their file.",
                &self.no_descriptors,
            ),
            (
                "sluice_accept_errors_total",
                "Failed accept(2) calls (each pauses the listener).",
                &self.accept_errors,
            ),
            (
                "sluice_policy_instances_total",
                "Policy instances created.",
                &self.policy_instances,
            ),
            (
                "sluice_invalid_decisions_total",
                "Decisions refused by validation.",
                &self.invalid_decisions,
            ),
            (
                "sluice_truncated_files_total",
                "Transfers cut short because the file shrank.",
                &self.truncated_files,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", load(n));
        }
        family(
            &mut out,
            "sluice_policy_faults_total",
            "counter",
            "Policy calls that failed, by kind.",
        );
        for (kind, n) in FAULTS.iter().zip(&self.faults) {
            let _ = writeln!(
                out,
                "sluice_policy_faults_total{{kind=\"{kind}\"}} {}",
                load(n)
            );
        }
        family(
            &mut out,
            "sluice_reloads_total",
            "counter",
            "Policy reloads, by result.",
        );
        let _ = writeln!(
            out,
            "sluice_reloads_total{{result=\"ok\"}} {}",
            load(&self.reloads)
        );
        let _ = writeln!(
            out,
            "sluice_reloads_total{{result=\"refused\"}} {}",
            load(&self.reload_failures)
        );
        family(
            &mut out,
            "sluice_certificate_reloads_total",
            "counter",
            "TLS certificate reloads, by result.",
        );
        let _ = writeln!(
            out,
            "sluice_certificate_reloads_total{{result=\"ok\"}} {}",
            load(&self.certificate_reloads)
        );
        let _ = writeln!(
            out,
            "sluice_certificate_reloads_total{{result=\"refused\"}} {}",
            load(&self.certificate_reload_failures)
        );
        family(
            &mut out,
            "sluice_policy_call_seconds",
            "histogram",
            "Wall time of policy decide calls.",
        );
        self.policy_latency
            .render(&mut out, "sluice_policy_call_seconds");
        family(
            &mut out,
            "sluice_open_connections",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "sluice_open_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "sluice_max_connections",
            "gauge",
            "The cap on client connections (max-connections).",
        );
        let _ = writeln!(
            out,
            "sluice_max_connections {}",
            load(&self.max_connections)
        );
        family(
            &mut out,
            "sluice_connection_cap_waits_total",
            "counter",
            "Accepted clients that waited for a connection slot (max-connections), accepting paused meanwhile.",
        );
        let _ = writeln!(
            out,
            "sluice_connection_cap_waits_total {}",
            load(&self.connection_cap_waits)
        );
        for (name, help, v) in caches.gauges() {
            let name = format!("sluice_{name}");
            family(&mut out, &name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        if let Some(fds) = open_fds {
            family(
                &mut out,
                "sluice_open_fds",
                "gauge",
                "File descriptors the process holds.",
            );
            let _ = writeln!(out, "sluice_open_fds {fds}");
        }
        out
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
