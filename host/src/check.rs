//! `sluice check POLICY.wasm`: a policy author's check that a component
//! loads as the server would load it (compile, version, link, instantiate,
//! `configure` with the configuration's `[policy]` settings, capability
//! bounds, canary), that its decisions for a real file, a directory and a
//! missing path pass the server's own validation (`decision::validate`),
//! and what a call costs.
//!
//! Everything the policy said is shown escaped and bounded
//! ([`PolicyText`]): it is the output of untrusted code, shown on a
//! terminal.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::app::SiteSpecs;
use crate::config::{Config, TransferConfig};
use crate::contract::wit;
use crate::decision;
use crate::handler::request;
use crate::policy::{Capabilities, Fields, LoadError, Policy, Sandbox};
use crate::policy_text::PolicyText;
use crate::resolve::{normalize, Found, Root};

/// What `check` found out about a policy that loads.
#[derive(Debug)]
pub struct Report {
    pub version: &'static str,
    pub capabilities: String,
    /// Per-call wall time of `decide` on a warm instance: p50 and p99.
    pub call: (Duration, Duration),
}

/// Loads `path` exactly as `sluice serve` would with `config` (its
/// `[sandbox]` limits and `[policy]` settings), validates its decisions for
/// a real file, a directory and a missing path as the server does (an
/// invalid one is an error naming the rule), then times `calls` calls of
/// `decide` for the `GET` of the file.
pub fn check(path: &Path, config: &Config, calls: usize) -> anyhow::Result<Report> {
    let pool = crate::policy::pool_for(&config.sandbox, 1, config.sandbox.memory.0);
    let sandbox =
        Sandbox::new(&pool).map_err(|e| anyhow::anyhow!("cannot set up wasmtime: {e:#}"))?;
    // The settings and limits the default site would have.
    let spec = SiteSpecs::from_config(config).default;
    let settings = crate::config::read_settings(&spec.settings)?;
    let policy: Policy = Policy::load(&sandbox, Some(path), &settings, spec.limits)
        .map_err(|e: LoadError| anyhow::anyhow!("{}: {e}", path.display()))?;

    let caps = policy.capabilities();
    let mut text = String::new();
    let shown =
        |names: &mut dyn Iterator<Item = &str>| names.map(PolicyText::from).collect::<Vec<_>>();
    let _ = writeln!(
        text,
        "  index names:      {:?}",
        shown(&mut caps.index_names.iter().map(String::as_str))
    );
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
            let names = shown(&mut headers.iter().map(|h| h.as_str()));
            let _ = writeln!(text, "  request headers:  {names:?}");
            let _ = writeln!(text, "  query:            {query}");
        }
    }
    let _ = writeln!(text, "  reusable:         {}", caps.reusable);
    let _ = writeln!(
        text,
        "  listing:          {}",
        match caps.listing {
            0 => "never".to_owned(),
            n => format!("up to {n} entries"),
        }
    );
    let _ = writeln!(
        text,
        "  chunk size:       {}",
        match caps.transport.chunk_size {
            0 => "host default".to_owned(),
            n => n.to_string(),
        }
    );
    let _ = write!(text, "  zero-copy:        {}", caps.transport.zero_copy);

    // Real files, looked up as the server looks them up, and the policy's
    // decisions for them validated as the server validates them: a policy
    // that passes `check` does not answer 500 for every file.
    let site = Samples::new()?;
    let transfer = TransferConfig::default();
    let mut timed = None;
    for (what, target) in [
        ("a file", "/index.html"),
        ("a directory", "/docs/"),
        ("a missing path", "/missing.html"),
    ] {
        let (req, found) = site.request(target, caps)?;
        let entry = request::entry_to_wit(&found, None);
        let (outcome, transport) = policy.decide(&req, &entry).map_err(|e| {
            anyhow::anyhow!(
                "{}: decide(GET {target}), {what}, failed: {e}",
                path.display()
            )
        })?;
        // A rewrite is checked as the server checks one (a path it would
        // resolve, a reason within bounds); the server then decides again.
        match outcome {
            wit::Outcome::Respond(decision) => {
                decision::validate(decision, transport, &found, &transfer).map(drop)
            }
            wit::Outcome::Rewrite(rewrite) => decision::check_rewrite(&rewrite).map(drop),
        }
        .map_err(|rule| {
            anyhow::anyhow!(
                "{}: decide(GET {target}), {what}, returned a decision the server refuses \
                 (it would answer 500): {rule}",
                path.display()
            )
        })?;
        timed.get_or_insert((req, entry));
    }
    let (req, entry) = timed.expect("three requests made");
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

/// A small site in a temporary directory: `index.html` (4 KiB), a
/// directory `docs/` with an `index.html`, and no `missing.html`.
struct Samples {
    _dir: tempfile::TempDir,
    root: Root,
}

impl Samples {
    fn new() -> anyhow::Result<Samples> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("index.html"), [b'x'; 4096])?;
        std::fs::create_dir(dir.path().join("docs"))?;
        std::fs::write(dir.path().join("docs/index.html"), "<p>docs</p>\n")?;
        let root = Root::open(dir.path())?;
        Ok(Samples { _dir: dir, root })
    }

    /// `GET target` as the server hands it to the policy (only the fields
    /// it declared), and what the lookup found.
    fn request(&self, target: &str, caps: &Capabilities) -> anyhow::Result<(wit::Request, Found)> {
        let http = http::Request::get(target)
            .header(http::header::HOST, "localhost")
            .header(http::header::ACCEPT_ENCODING, "gzip, br")
            .body(())?;
        let path = normalize(target).map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
        let found = self
            .root
            .lookup(path.relative(), &caps.index_names, &caps.siblings)
            .map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
        let req = request::to_wit(&http, &path, None, false, &caps.fields);
        Ok((req, found))
    }
}
