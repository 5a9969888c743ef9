//! `sluice check POLICY.wasm`: a policy author's check that a component
//! loads as the server would load it (compile, version, link, instantiate,
//! `configure` with the configuration's `[policy]` settings, capability
//! bounds, canary), and what it costs per call.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{policy_settings, Config};
use crate::policy::{wit, Fields, LoadError, Policy, Sandbox};

/// What `check` found out about a policy that loads.
#[derive(Debug)]
pub struct Report {
    pub version: &'static str,
    pub capabilities: String,
    /// Per-call wall time of `decide` on a warm instance: p50 and p99.
    pub call: (Duration, Duration),
}

/// Loads `path` exactly as `sluice serve` would with `config` (its
/// `[sandbox]` limits and `[policy]` settings), then times `calls` calls of
/// `decide` for a `GET` of a small file.
pub fn check(path: &Path, config: &Config, calls: usize) -> anyhow::Result<Report> {
    let pool = crate::policy::pool_for(&config.sandbox, 1, config.sandbox.memory.0);
    let sandbox =
        Sandbox::new(&pool).map_err(|e| anyhow::anyhow!("cannot set up wasmtime: {e:#}"))?;
    let policy: Policy = Policy::load(
        &sandbox,
        Some(path),
        &policy_settings(&config.policy),
        config.sandbox.limits(),
    )
    .map_err(|e: LoadError| anyhow::anyhow!("{}: {e}", path.display()))?;

    let caps = policy.capabilities();
    let mut text = String::new();
    let _ = writeln!(text, "  index names:      {:?}", caps.index_names);
    let _ = writeln!(
        text,
        "  siblings:         {:?}",
        caps.siblings.iter().map(|c| c.token()).collect::<Vec<_>>()
    );
    match &caps.fields {
        Fields::All => {
            let _ = writeln!(
                text,
                "  request fields:   all headers and the query (0.1.0)"
            );
        }
        Fields::Declared { headers, query } => {
            let names: Vec<&str> = headers.iter().map(|h| h.as_str()).collect();
            let _ = writeln!(text, "  request headers:  {names:?}");
            let _ = writeln!(text, "  query:            {query}");
        }
    }
    let _ = writeln!(text, "  reusable:         {}", caps.reusable);
    let _ = writeln!(
        text,
        "  chunk size:       {}",
        match caps.transport.chunk_size {
            0 => "host default".to_owned(),
            n => n.to_string(),
        }
    );
    let _ = write!(text, "  zero-copy:        {}", caps.transport.zero_copy);

    let req = wit::Request {
        method: "GET".into(),
        path: "/index.html".into(),
        raw_query: None,
        headers: vec![wit::Header {
            name: "accept-encoding".into(),
            value: "gzip, br".into(),
        }],
        tls: false,
        version: wit::HttpVersion::Http11,
    };
    let entry = wit::Entry::File(wit::FileEntry {
        meta: wit::FileMeta {
            size: 4096,
            mtime_ns: 1_700_000_000_000_000_000,
            inode: 42,
            device: 1,
        },
        siblings: vec![],
    });
    let mut times = Vec::with_capacity(calls.max(1));
    for _ in 0..calls.max(1) {
        let start = Instant::now();
        policy.decide(&req, &entry).map_err(|e| {
            anyhow::anyhow!("{}: decide(GET /index.html) failed: {e}", path.display())
        })?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Ok(Report {
        version: policy.version(),
        capabilities: text,
        call: (at(0.5), at(0.99)),
    })
}
