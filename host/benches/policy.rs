//! Per-request cost of the policy call: a warm, reused instance against a
//! fresh store + instance per request, each with and without the epoch
//! deadline and `StoreLimits`; the production path
//! (`sluice::internals::policy::Policy::decide`, the *uncached* call), and the
//! decision-cache *hit* path that replaces it for a reusable policy (key
//! encoding, lookup, binding the verdict to the request's files); and
//! resident memory per loaded policy and per warm instance. Issue 18's
//! question, what site rules cost an uncached decision: the default policy
//! with 200 header rules and 1,000 redirect rules configured, none matching
//! the request (and a variant whose last redirect rule matches), against
//! the same without rules (`uncached-rules/…`).
//!
//! `cargo bench -p sluice --bench policy` (about a minute). Criterion reports
//! the median; the p50/p99/p99.9 table before it comes from a plain timing loop
//! of single calls. Pin it like the other benchmarks: `taskset -c 1 cargo bench …`.
//!
//! `SLUICE_BENCH_POLICY=path/to/policy.wasm` runs the rows on that component
//! instead of the built-in default policy (the Python and JavaScript examples,
//! or an earlier build of `guest/` to compare with side by side); the rows
//! that instantiate the 0.3.0 bindings directly (`warm/…`, `fresh-…`) are
//! left out for a component of an older version.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sluice::internals::handler::Reused;
use sluice::internals::policy::wit::v0_3::{Policy as Bindings, PolicyPre};
use sluice::internals::policy::{
    host_limits, wasmtime_config, wit, Policy, Sandbox, DEFAULT_POLICY,
};
use sluice::SandboxConfig;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    pooling: bool,
    epochs: bool,
    limits: bool,
}

/// One engine + pre-instantiated component for a variant.
struct Setup {
    v: Variant,
    engine: Engine,
    pre: PolicyPre<State>,
}

impl Setup {
    fn new(v: Variant) -> Setup {
        Setup::with_component(v, policy_bytes())
    }

    fn with_component(v: Variant, wasm: &[u8]) -> Setup {
        let mut config = wasmtime_config(&SandboxConfig::default());
        config.epoch_interruption(v.epochs);
        if !v.pooling {
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        }
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        let pre = PolicyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Setup { v, engine, pre }
    }

    /// A store + instance, configured (what a fresh-per-request host does
    /// before each call, and a warm host once).
    fn instance(&self) -> (Store<State>, Bindings) {
        let limits = if self.v.limits {
            StoreLimitsBuilder::new()
                .memory_size(16 << 20)
                .instances(32)
                .tables(32)
                .memories(4)
                .trap_on_grow_failure(true)
                .build()
        } else {
            StoreLimits::default()
        };
        let mut store = Store::new(
            &self.engine,
            State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
                limits,
            },
        );
        if self.v.limits {
            store.limiter(|s| &mut s.limits);
        }
        if self.v.epochs {
            store.epoch_deadline_trap();
            store.set_epoch_deadline(11);
        }
        let bindings = self.pre.instantiate(&mut store).unwrap();
        bindings
            .call_configure(&mut store, &[], host_limits())
            .unwrap()
            .unwrap();
        (store, bindings)
    }

    fn call(
        &self,
        store: &mut Store<State>,
        bindings: &Bindings,
        req: &wit::Request,
        entry: &wit::Entry,
    ) {
        if self.v.epochs {
            store.set_epoch_deadline(11);
        }
        black_box(bindings.call_decide(&mut *store, req, entry).unwrap());
    }
}

/// The component benchmarked: `SLUICE_BENCH_POLICY`'s, or the default policy.
fn policy_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    match std::env::var_os("SLUICE_BENCH_POLICY") {
        Some(path) => BYTES.get_or_init(|| std::fs::read(&path).expect("SLUICE_BENCH_POLICY")),
        None => DEFAULT_POLICY,
    }
}

/// A `GET` of a file with an 8-header record, as BENCH-METHOD's table used.
fn request() -> (wit::Request, wit::Entry) {
    let h = |n: &str, v: &str| wit::Header {
        name: n.into(),
        value: v.into(),
    };
    let req = wit::Request {
        method: "GET".into(),
        path: "/assets/app.js".into(),
        raw_query: None,
        headers: vec![
            h("host", "example.test"),
            h(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
            ),
            h("accept", "*/*"),
            h("accept-encoding", "gzip, deflate, br, zstd"),
            h("accept-language", "en-US,en;q=0.5"),
            h("if-none-match", "\"abc-123\""),
            h("referer", "https://example.test/"),
            h("connection", "keep-alive"),
        ],
        tls: false,
        version: wit::HttpVersion::Http11,
        hop: None,
    };
    let meta = wit::FileMeta {
        size: 123_456,
        mtime_ns: 1_700_000_000_000_000_000,
        inode: 42,
        device: 7,
    };
    (
        req,
        wit::Entry::File(wit::FileEntry {
            meta,
            siblings: vec![],
        }),
    )
}

const VARIANTS: [Variant; 9] = [
    Variant {
        name: "warm/bare",
        pooling: true,
        epochs: false,
        limits: false,
    },
    Variant {
        name: "warm/epoch",
        pooling: true,
        epochs: true,
        limits: false,
    },
    Variant {
        name: "warm/limits",
        pooling: true,
        epochs: false,
        limits: true,
    },
    Variant {
        name: "warm/epoch+limits",
        pooling: true,
        epochs: true,
        limits: true,
    },
    Variant {
        name: "fresh-pooling/bare",
        pooling: true,
        epochs: false,
        limits: false,
    },
    Variant {
        name: "fresh-pooling/epoch",
        pooling: true,
        epochs: true,
        limits: false,
    },
    Variant {
        name: "fresh-pooling/limits",
        pooling: true,
        epochs: false,
        limits: true,
    },
    Variant {
        name: "fresh-pooling/epoch+limits",
        pooling: true,
        epochs: true,
        limits: true,
    },
    Variant {
        name: "fresh-ondemand/epoch+limits",
        pooling: false,
        epochs: true,
        limits: true,
    },
];

/// One request's worth of work for a variant.
fn one(
    setup: &Setup,
    warm: &mut Option<(Store<State>, Bindings)>,
    req: &wit::Request,
    entry: &wit::Entry,
) {
    if setup.v.name.starts_with("warm") {
        let (store, bindings) = warm.get_or_insert_with(|| setup.instance());
        setup.call(store, bindings, req, entry);
    } else {
        let (mut store, bindings) = setup.instance();
        setup.call(&mut store, &bindings, req, entry);
        drop(store);
    }
}

fn percentiles(name: &str, mut f: impl FnMut()) {
    for _ in 0..2_000 {
        f();
    }
    let n = 20_000;
    let mut ns = Vec::with_capacity(n);
    let cpu = thread_cpu_ns();
    for _ in 0..n {
        let t = Instant::now();
        f();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    let cpu = (thread_cpu_ns() - cpu) / n as u64;
    ns.sort_unstable();
    let p = |q: f64| ns[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{name:<32} {:>9} {:>9} {:>9} {:>9} {cpu:>9}",
        p(0.5),
        p(0.99),
        p(0.999),
        ns[n - 1]
    );
}

/// CPU time this thread has used, ns: the `cpu` column, the mean CPU time
/// per call, which time spent descheduled (a loaded machine) does not
/// inflate as it does wall-clock figures.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn memory() {
    let settings = SandboxConfig::default();
    let sandbox = Sandbox::new(&settings).unwrap();
    let limits = settings.limits();
    // Compile once first, so the lazily-initialized parts of wasmtime and
    // Cranelift are not charged to the first policy.
    let first = Policy::from_bytes(&sandbox, policy_bytes(), "warm-up", &[], limits).unwrap();
    let (req, entry) = request();
    first.decide(&req, &entry).unwrap();
    let n = 16;
    let before = rss_kib();
    let policies: Vec<Policy> = (0..n)
        .map(|i| {
            // Identical bytes would share one compiled component: a custom
            // section of its own makes each compile separately.
            let mut bytes = policy_bytes().to_vec();
            bytes.extend_from_slice(&[0, 4, 3, b'b', b'n', i as u8]);
            let p = Policy::from_bytes(&sandbox, &bytes, &format!("p{i}"), &[], limits).unwrap();
            // A loaded policy holds no instance until its first call.
            p.decide(&req, &entry).unwrap();
            p
        })
        .collect();
    let after = rss_kib();
    println!(
        "RSS per loaded policy (compiled component + 1 warm instance, {} KiB guest): {} KiB  [{n} policies: {before} -> {after} KiB]",
        policy_bytes().len() / 1024,
        (after - before) / n
    );
    drop(policies);

    // Per extra warm instance of one policy: hold `m` stores at once.
    let setup = Setup::new(VARIANTS[3]);
    let m = 48;
    let _prime = setup.instance();
    let before = rss_kib();
    let held: Vec<_> = (0..m)
        .map(|_| {
            let (mut store, bindings) = setup.instance();
            setup.call(&mut store, &bindings, &req, &entry);
            (store, bindings)
        })
        .collect();
    let after = rss_kib();
    println!("RSS per warm instance (store + instance after one call): {} KiB  [{m} instances: {before} -> {after} KiB]", (after - before) / m);
    drop(held);
}

/// Issue 18's site rules as the host gives them to the default policy (a
/// `{ file = … }` value is given as text): 200 header rules and 1,000
/// redirect rules shaped like a real site's (old blog posts under one
/// prefix, splats, placeholders, one starting with a placeholder and so
/// tried for every path, query conditions), none matching `request()`'s
/// `/assets/app.js`; with `last_matches`, the last redirect rule is a
/// forced one (the file exists) that does.
fn site_rules(last_matches: bool) -> Vec<wit::Setting> {
    let mut redirects = String::new();
    for i in 0..700 {
        let (year, month) = (2015 + i / 100, 1 + i % 12);
        redirects += &format!("/blog/{year}/{month:02}/old-post-{i}  /posts/old-post-{i}  301\n");
    }
    for i in 0..100 {
        redirects += &format!("/docs/v{i}/*  /docs/:splat  301\n");
    }
    for i in 0..100 {
        redirects += &format!("/products/{i}/:slug  /shop/{i}/:slug  302\n");
    }
    for i in 0..50 {
        redirects += &format!("/team/member-{i}  /about/team#member-{i}  301\n");
    }
    for i in 0..30 {
        redirects += &format!("/:lang/legacy-{i}  /:lang/new-{i}  301\n");
    }
    for i in 0..19 {
        redirects += &format!("/store-{i} id=:id  /blog/:id  301\n");
    }
    redirects += if last_matches {
        "/assets/*  /static/:splat  301!\n"
    } else {
        "/store-19 id=:id  /blog/:id  301\n"
    };
    let mut headers = String::new();
    for i in 0..150 {
        headers += &format!("/app/section-{i}/*\n  X-Section: {i}\n");
    }
    for i in 0..50 {
        headers += &format!(
            "/api/v{i}/*\n  Access-Control-Allow-Origin: *\n  Access-Control-Allow-Methods: GET, HEAD\n"
        );
    }
    assert_eq!(redirects.lines().count(), 1000);
    assert_eq!(headers.lines().filter(|l| l.starts_with('/')).count(), 200);
    let text = |name: &str, value: String| wit::Setting {
        name: name.into(),
        value: wit::SettingValue::Text(value),
    };
    vec![text("redirects", redirects), text("headers", headers)]
}

/// The request with only the header fields the policy declared.
fn declared_only(policy: &Policy, req: &wit::Request) -> wit::Request {
    let fields = &policy.capabilities().fields;
    let mut req = req.clone();
    req.headers
        .retain(|h| fields.wants(&http::HeaderName::from_bytes(h.name.as_bytes()).unwrap()));
    req
}

/// The decision-cache hit path of the handler, on a real file: encode the
/// key from the request and lookup, find the verdict, bind it to the
/// lookup's descriptors.
struct CacheHit {
    _dir: tempfile::TempDir,
    request: http::Request<()>,
    path: sluice::internals::resolve::NormalPath,
    found: sluice::internals::resolve::Found,
    fields: sluice::internals::policy::Fields,
    cache: sluice::internals::handler::DecisionCache,
}

impl CacheHit {
    fn new(policy: &Policy) -> CacheHit {
        use sluice::internals::handler::{entry_to_wit, to_wit, write_key};
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app.js"), vec![b'x'; 4096]).unwrap();
        let (req, _) = request();
        let mut builder = http::Request::builder().uri(&req.path);
        for h in &req.headers {
            builder = builder.header(&h.name, &h.value);
        }
        let request = builder.body(()).unwrap();
        let path = sluice::internals::resolve::normalize(&req.path).unwrap();
        let root = sluice::internals::resolve::Root::open(dir.path()).unwrap();
        let caps = policy.capabilities();
        let found = root
            .lookup(path.relative(), &caps.index_names, &caps.siblings)
            .unwrap();
        let fields = caps.fields.clone();
        let (outcome, transport) = policy
            .decide(
                &to_wit(&request, &path, None, false, &fields),
                &entry_to_wit(&found, None),
            )
            .unwrap();
        let wit::Outcome::Respond(decision) = outcome else {
            unreachable!("the default policy answers a file")
        };
        let verdict = sluice::internals::decision::validate(
            decision,
            transport,
            &found,
            &sluice::TransferConfig::default(),
        )
        .unwrap();
        let store = sluice::internals::handler::decisions(64 << 20);
        let cache = sluice::internals::handler::DecisionCache::new(&store, 4 << 20).unwrap();
        let mut key = Vec::new();
        write_key(
            &mut key, &request, &path, None, false, &fields, &found, None,
        );
        let hash = cache.hash(&key);
        cache.insert(key.into(), hash, Reused::Respond(verdict));
        CacheHit {
            _dir: dir,
            request,
            path,
            found,
            fields,
            cache,
        }
    }

    fn run(&self) {
        thread_local! {
            static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        KEY.with_borrow_mut(|key| {
            sluice::internals::handler::write_key(
                key,
                &self.request,
                &self.path,
                None,
                false,
                &self.fields,
                &self.found,
                None,
            );
            let held = self.cache.get(key, self.cache.hash(key)).unwrap();
            let Reused::Respond(verdict) = &*held else {
                unreachable!("the default policy answers a file")
            };
            black_box(verdict.plan(&self.found).unwrap());
        });
    }
}

fn main() {
    let (req, entry) = request();
    // The production path: sluice's own pool of warm instances (mutex, epoch
    // deadline, StoreLimits, panic guard). `SLUICE_BENCH_MEMORY_MIB` raises
    // the memory cap for a component that grows past the default (the
    // JavaScript example does, over thousands of calls on one instance).
    let mut settings = SandboxConfig::default();
    if let Some(mib) = std::env::var("SLUICE_BENCH_MEMORY_MIB")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
    {
        settings.memory.0 = mib << 20;
    }
    let sandbox = Sandbox::new(&settings).unwrap();
    let production =
        Policy::from_bytes(&sandbox, policy_bytes(), "default", &[], settings.limits()).unwrap();
    let setups: Vec<Setup> = match production.version() {
        "0.3.0" => VARIANTS.iter().map(|v| Setup::new(*v)).collect(),
        _ => Vec::new(),
    };

    println!(
        "policy call, ns per request (single thread, {} samples)",
        20_000
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "variant", "p50", "p99", "p99.9", "max", "cpu"
    );
    for setup in &setups {
        let mut warm = None;
        percentiles(setup.v.name, || one(setup, &mut warm, &req, &entry));
    }
    percentiles("sluice Policy::decide (warm pool)", || {
        black_box(production.decide(&req, &entry).unwrap());
    });
    // What the host really passes a 0.2 policy: only its declared fields.
    let declared = declared_only(&production, &req);
    percentiles("uncached: decide, declared fields", || {
        black_box(production.decide(&declared, &entry).unwrap());
    });
    let hit = CacheHit::new(&production);
    percentiles("cache hit: key + lookup + plan", || hit.run());
    // Site rules: the same uncached call with 200 header and 1,000 redirect
    // rules configured.
    let ruled = |last_matches: bool| {
        let p = Policy::from_bytes(
            &sandbox,
            DEFAULT_POLICY,
            "rules",
            &site_rules(last_matches),
            settings.limits(),
        )
        .unwrap();
        let req = declared_only(&p, &req);
        (p, req)
    };
    let (rules, rules_req) = ruled(false);
    let (rules_last, rules_last_req) = ruled(true);
    let status = |p: &Policy, req: &wit::Request| match p.decide(req, &entry).unwrap().0 {
        wit::Outcome::Respond(d) => d.status,
        wit::Outcome::Rewrite(_) => 0,
    };
    assert_eq!(status(&production, &declared), 200);
    assert_eq!(status(&rules, &rules_req), 200);
    assert_eq!(status(&rules_last, &rules_last_req), 301);
    percentiles("uncached: no rules", || {
        black_box(production.decide(&declared, &entry).unwrap());
    });
    percentiles("uncached: 200 h + 1000 r, none match", || {
        black_box(rules.decide(&rules_req, &entry).unwrap());
    });
    percentiles("uncached: 200 h + 1000 r, last r", || {
        black_box(rules_last.decide(&rules_last_req, &entry).unwrap());
    });
    // The same calls on a trivial policy (the evil fixture's inline "ok"
    // path), which separates wasmtime's cost from the default policy's work.
    let trivial = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guest-build/wasm32-wasip2/release/sluice_evil_policy.wasm");
    if let Ok(wasm) = std::fs::read(&trivial) {
        for v in [VARIANTS[0], VARIANTS[3], VARIANTS[4], VARIANTS[7]] {
            let setup = Setup::with_component(v, &wasm);
            let mut warm = None;
            let name = format!("trivial {}", v.name);
            percentiles(&name, || one(&setup, &mut warm, &req, &entry));
        }
    }
    // Sixteen compiles of a 12-18 MiB interpreter component would take
    // minutes: resident memory is measured for 0.3.0 components only.
    if production.version() == "0.3.0" {
        memory();
    }
    println!();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(2000))
        .sample_size(30)
        .configure_from_args();
    let mut group = c.benchmark_group("policy-call");
    for setup in &setups {
        let mut warm = None;
        group.bench_function(setup.v.name, |b| {
            b.iter(|| one(setup, &mut warm, &req, &entry))
        });
    }
    group.bench_function("sluice-policy-decide", |b| {
        b.iter(|| black_box(production.decide(&req, &entry).unwrap()))
    });
    group.bench_function("uncached-declared-fields", |b| {
        b.iter(|| black_box(production.decide(&declared, &entry).unwrap()))
    });
    group.bench_function("cache-hit", |b| b.iter(|| hit.run()));
    group.finish();
    let mut group = c.benchmark_group("uncached-rules");
    group.bench_function("none", |b| {
        b.iter(|| black_box(production.decide(&declared, &entry).unwrap()))
    });
    group.bench_function("200h-1000r-none-match", |b| {
        b.iter(|| black_box(rules.decide(&rules_req, &entry).unwrap()))
    });
    group.bench_function("200h-1000r-last-redirect-matches", |b| {
        b.iter(|| black_box(rules_last.decide(&rules_last_req, &entry).unwrap()))
    });
    group.finish();
    c.final_summary();
}
