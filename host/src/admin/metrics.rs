//! What the admin endpoint shows of the counters (`stats`) and gauges:
//! `GET /stats`, one `name value` line each, and `GET /metrics`, the
//! Prometheus text exposition format (version 0.0.4) with types, labels and
//! the policy-latency histogram. The names are an interface (dashboards,
//! tests and the README name them): a counter's name here does not change
//! when its field does.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::app::App;
use crate::stats::{self, BodyPath, CacheUsage, Fault, Histogram, SiteCounters, Stats};

/// `GET /stats`: every counter and gauge, one `name value` line each.
pub fn stats_text(app: &App) -> String {
    let mut body: String = stats::get()
        .counters()
        .map(|(name, v)| format!("{name} {v}\n"))
        .collect();
    body.extend(
        cache_gauges(&app.stores.usage())
            .iter()
            .map(|(name, _, v)| format!("{name} {v}\n")),
    );
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        body.push_str(&format!("open_fds {}\n", fds.count()));
    }
    let (idle, bytes) = app.sandbox.idle_instances();
    body.push_str(&format!(
        "idle_instances {idle}\nidle_instance_bytes {bytes}\n"
    ));
    body.push_str(&format!(
        "body_memory_in_use {}\nbody_memory_limit {}\n",
        app.body_budget.in_use(),
        app.body_budget.bytes()
    ));
    body
}

/// `GET /metrics`: the Prometheus text exposition format.
pub fn prometheus(app: &App) -> String {
    let fds = std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count);
    let mut body = counters(
        stats::get(),
        app.sites().map(|(name, site)| (name, &site.counters)),
        &app.stores.usage(),
        fds,
    );
    idle_gauges(&mut body, app);
    body.push_str(&format!(
        "# HELP sluice_body_memory_bytes Response-body bytes held in memory now ([limits] body-memory).\n\
         # TYPE sluice_body_memory_bytes gauge\n\
         sluice_body_memory_bytes {}\n\
         # HELP sluice_body_memory_limit_bytes The host-wide body budget.\n\
         # TYPE sluice_body_memory_limit_bytes gauge\n\
         sluice_body_memory_limit_bytes {}\n",
        app.body_budget.in_use(),
        app.body_budget.bytes()
    ));
    body
}

/// The process-wide counters, the sites' responses, the caches' gauges and
/// the descriptors held, as Prometheus families.
fn counters<'a>(
    stats: &Stats,
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
        for (i, n) in counters.by_class().iter().enumerate() {
            let _ = writeln!(
                out,
                "sluice_requests_total{{vhost=\"{}\",class=\"{}xx\"}} {}",
                label(site),
                i + 1,
                n
            );
        }
    }
    family(
        &mut out,
        "sluice_body_bytes_total",
        "counter",
        "File body bytes sent, by transfer path.",
    );
    for path in BodyPath::ALL {
        let _ = writeln!(
            out,
            "sluice_body_bytes_total{{path=\"{}\"}} {}",
            path.name(),
            load(stats.body_bytes(path))
        );
    }
    for (name, help, n) in [
        (
            "sluice_policy_calls_total",
            "Calls into a policy's decide.",
            &stats.policy_calls,
        ),
        (
            "sluice_decision_cache_hits_total",
            "Requests answered from the decision cache without a policy call.",
            &stats.decision_cache_hits,
        ),
        (
            "sluice_open_file_cache_hits_total",
            "Lookups answered by the open-file cache.",
            &stats.open_file_hits,
        ),
        (
            "sluice_open_file_releases_total",
            "Descriptors the open-file caches closed early because the process had none left.",
            &stats.open_file_releases,
        ),
        (
            "sluice_no_descriptors_total",
            "Requests answered 503 because no descriptor was left to open their file.",
            &stats.no_descriptors,
        ),
        (
            "sluice_accept_errors_total",
            "Failed accept(2) calls (each pauses the listener).",
            &stats.accept_errors,
        ),
        (
            "sluice_policy_instances_total",
            "Policy instances created.",
            &stats.policy_instances,
        ),
        (
            "sluice_invalid_decisions_total",
            "Decisions refused by validation.",
            &stats.invalid_decisions,
        ),
        (
            "sluice_truncated_files_total",
            "Transfers cut short because the file shrank.",
            &stats.truncated_files,
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
    for kind in Fault::ALL {
        let _ = writeln!(
            out,
            "sluice_policy_faults_total{{kind=\"{}\"}} {}",
            kind.name(),
            load(stats.fault(kind))
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
        load(&stats.reloads)
    );
    let _ = writeln!(
        out,
        "sluice_reloads_total{{result=\"refused\"}} {}",
        load(&stats.reload_failures)
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
        load(&stats.certificate_reloads)
    );
    let _ = writeln!(
        out,
        "sluice_certificate_reloads_total{{result=\"refused\"}} {}",
        load(&stats.certificate_reload_failures)
    );
    family(
        &mut out,
        "sluice_policy_call_seconds",
        "histogram",
        "Wall time of policy decide calls.",
    );
    histogram(
        &mut out,
        "sluice_policy_call_seconds",
        &stats.policy_latency,
    );
    family(
        &mut out,
        "sluice_open_connections",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(
        out,
        "sluice_open_connections {}",
        stats.connections.load(Ordering::Relaxed)
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
        load(&stats.max_connections)
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
        load(&stats.connection_cap_waits)
    );
    family(
        &mut out,
        "sluice_parked_connections_total",
        "counter",
        "Idle HTTP/1 keep-alive connections parked: hyper's buffers released until the client's next bytes.",
    );
    let _ = writeln!(
        out,
        "sluice_parked_connections_total {}",
        load(&stats.parked_connections)
    );
    for (name, help, counter) in [
        (
            "sluice_h3_connections_total",
            "QUIC connections whose handshake completed (HTTP/3).",
            &stats.h3_connections,
        ),
        (
            "sluice_h3_requests_total",
            "Requests answered over HTTP/3.",
            &stats.h3_requests,
        ),
        (
            "sluice_h3_streams_stalled_total",
            "HTTP/3 streams reset because the client took nothing for send-timeout-ms.",
            &stats.h3_streams_stalled,
        ),
        (
            "sluice_quic_retries_total",
            "QUIC clients asked to prove their address (Retry): many handshakes in progress.",
            &stats.quic_retries,
        ),
        (
            "sluice_quic_refused_total",
            "QUIC connection attempts refused: every connection slot taken.",
            &stats.quic_refused,
        ),
        (
            "sluice_quic_handshake_failures_total",
            "QUIC handshakes that failed or timed out.",
            &stats.quic_handshake_failures,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", load(counter));
    }
    for (name, help, v) in cache_gauges(caches) {
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

/// A histogram's cumulative `le` buckets, sum and count.
fn histogram(out: &mut String, name: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (bound, n) in h.buckets() {
        cumulative += n;
        let _ = match bound {
            Some(us) => {
                let le = us as f64 / 1e6;
                writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}")
            }
            None => writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
        };
    }
    let sum = h.sum_ns() as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// What the host-wide caches hold against their bounds: name (`/stats`;
/// `sluice_` before it in `/metrics`), help and value.
fn cache_gauges(usage: &CacheUsage) -> [(&'static str, &'static str, u64); 5] {
    [
        (
            "decision_cache_bytes",
            "Bytes the decision caches of all sites hold (keys, verdicts, the cache's own slots).",
            usage.decision_bytes,
        ),
        (
            "decision_cache_bytes_limit",
            "The host-wide bound on decision-cache bytes ([cache] decisions-total).",
            usage.decision_bytes_limit,
        ),
        (
            "decision_cache_entries",
            "Decisions cached, all sites together.",
            usage.decision_entries,
        ),
        (
            "open_file_cache_descriptors",
            "Descriptors the open-file caches of all sites hold open.",
            usage.open_file_descriptors,
        ),
        (
            "open_file_cache_descriptors_limit",
            "The host-wide bound on open-file cache descriptors ([cache] descriptors).",
            usage.open_file_descriptors_limit,
        ),
    ]
}

/// The idle policy instances held host-wide (see `policy::idle`), as
/// Prometheus gauges.
fn idle_gauges(out: &mut String, app: &App) {
    let (idle, bytes) = app.sandbox.idle_instances();
    out.push_str(&format!(
        "# HELP sluice_idle_instances Idle policy instances held, all sites together.\n\
         # TYPE sluice_idle_instances gauge\nsluice_idle_instances {idle}\n\
         # HELP sluice_idle_instance_bytes Linear memory of the idle policy instances \
         (bounded by `idle-memory`).\n\
         # TYPE sluice_idle_instance_bytes gauge\nsluice_idle_instance_bytes {bytes}\n"
    ));
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
