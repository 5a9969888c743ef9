//! The command line: `sluice serve DIR` and `sluice check POLICY.wasm`.
//! In the library so the binary (`main.rs`, which only calls [`main`])
//! uses the modules as the crate does, without making them public API.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Config;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Static-file HTTP server with a WebAssembly response policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a directory.
    Serve(ServeArgs),
    /// Check that a policy component loads as the server would load it, and
    /// measure what a call costs.
    Check {
        /// The policy component (.wasm).
        policy: PathBuf,
        /// TOML configuration whose [sandbox] limits and [policy] settings apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Calls of `decide` to time.
        #[arg(long, default_value_t = 1000)]
        calls: usize,
    },
}

/// `sluice serve`'s flags: each overrides its key in the config file.
#[derive(Args)]
struct ServeArgs {
    /// Directory to serve (overrides `root` in the config file).
    dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Policy component (.wasm); the built-in default policy if absent.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Runtime worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Admin listener: GET /stats, GET /metrics, POST /reload (keep it on loopback).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// PEM certificate chain: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Address of the TLS listener [default: 127.0.0.1:8443].
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// Also serve HTTP/3 (QUIC) on the TLS listener's address, over UDP
    /// (`[http3] enabled`).
    #[arg(long)]
    http3: bool,
}

impl ServeArgs {
    /// The config file (or the defaults) with the flags given on top.
    fn config(self) -> anyhow::Result<Config> {
        let mut cfg = load_config(self.config.as_deref())?;
        cfg.root = self.dir.or(cfg.root);
        cfg.listen = self.listen.unwrap_or(cfg.listen);
        cfg.policy_file = self.policy.or(cfg.policy_file);
        cfg.workers = self.workers.unwrap_or(cfg.workers);
        cfg.admin = self.admin.or(cfg.admin);
        cfg.tls_cert = self.tls_cert.or(cfg.tls_cert);
        cfg.tls_key = self.tls_key.or(cfg.tls_key);
        cfg.tls_listen = self.tls_listen.or(cfg.tls_listen);
        cfg.http3.enabled |= self.http3;
        cfg.check()?;
        Ok(cfg)
    }
}

/// The configuration file, or the defaults when none is given.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    })
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "sluice=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or pipe gets no escape
        // sequences but those a policy's text might carry, and those are
        // escaped (`policy_text`).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = match Cli::parse().command {
        Command::Serve(args) => args.config()?,
        Command::Check {
            policy,
            config,
            calls,
        } => return check(&policy, config.as_deref(), calls),
    };
    // Before any thread exists: it takes the sockets and clears LISTEN_*.
    let activated = crate::activation::from_env()?;
    if activated.https.is_some() && cfg.tls().is_none() {
        anyhow::bail!(
            "socket activation passed an https socket, but no tls-cert and tls-key are configured"
        );
    }
    // The open-file caches' budget comes out of the limit first (App
    // computes the same from the same limit); connections get the rest.
    let descriptors = crate::descriptors::raise_limit();
    let cache = crate::descriptors::cache_budget(cfg.cache.descriptors, descriptors);
    cfg.max_connections =
        crate::descriptors::fit_connections(cfg.max_connections, descriptors, cache);
    // Before the admin endpoint can be asked for it.
    crate::stats::get().max_connections.store(
        cfg.max_connections as u64,
        std::sync::atomic::Ordering::Relaxed,
    );

    let runtime = crate::runtime::build(&cfg)?;
    tracing::info!(
        workers = cfg.worker_threads(),
        event_interval = cfg.event_interval,
        global_queue_interval = cfg.global_queue_interval,
        io_events = cfg.io_events,
        busy_io_events = cfg.busy_io_events,
        "runtime"
    );
    let access_log = runtime.block_on(run(cfg, activated))?;
    // Connections cut at the grace period end with the runtime, and their
    // responses' access-log lines are handed over as they go: then flush.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Some(log) = access_log {
        log.flush(std::time::Duration::from_secs(5));
    }
    Ok(())
}

/// `sluice check`: prints what the policy declares and costs; an error (and
/// a non-zero exit) names the step that failed.
fn check(
    policy: &std::path::Path,
    config: Option<&std::path::Path>,
    calls: usize,
) -> anyhow::Result<()> {
    let cfg = load_config(config)?;
    let report = crate::check::check(policy, &cfg, calls)?;
    println!("{}: sluice:policy@{}", policy.display(), report.version);
    println!("{}", report.capabilities);
    println!(
        "  decide:           p50 {:.1} µs, p99 {:.1} µs ({calls} calls, warm instance)",
        report.call.0.as_secs_f64() * 1e6,
        report.call.1.as_secs_f64() * 1e6
    );
    Ok(())
}

/// A listener handed over by socket activation, for tokio.
fn adopt(listener: std::net::TcpListener, role: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let adopted = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener));
    adopted.map_err(|e| anyhow::anyhow!("the {role} socket passed by socket activation: {e}"))
}

/// The listener handed over for `role`, or else one bound to `addr`; a
/// failure names the configuration key (`listen`, `tls-listen`, `admin`)
/// and the address, as in `listen 127.0.0.1:8080: Address already in use`.
async fn listen_on(
    activated: Option<std::net::TcpListener>,
    role: &str,
    key: &str,
    addr: SocketAddr,
) -> anyhow::Result<(tokio::net::TcpListener, bool)> {
    match activated {
        Some(l) => Ok((adopt(l, role)?, true)),
        None => match crate::listener::bind(addr).await {
            Ok(l) => Ok((l, false)),
            Err(e) => Err(anyhow::anyhow!("{key} {addr}: {e}")),
        },
    }
}

/// Serves until a shutdown signal; returns the access log to flush.
async fn run(
    cfg: Config,
    activated: crate::activation::Activated,
) -> anyhow::Result<Option<crate::access_log::AccessLog>> {
    // Certificates first: a bad one is refused before anything listens.
    let tls = match cfg.tls() {
        Some((addr, default)) => Some((
            addr,
            crate::tls::Certificates::load(default, cfg.vhost_certs())?,
        )),
        None => None,
    };
    let certs = tls.as_ref().map(|(_, certs)| certs.clone());
    let app = crate::app::App::from_config(&cfg)?;
    // Every listener is bound before any is announced: a start that fails
    // says which one, and nothing claimed to be listening.
    let listener = listen_on(activated.http, "http", "listen", cfg.listen).await?;
    let tls = match tls {
        Some((addr, certs)) => Some((
            listen_on(activated.https, "https", "tls-listen", addr).await?,
            certs,
        )),
        None => None,
    };
    // HTTP/3 on the TLS listener's address (its port, when it was 0).
    let quic = match &tls {
        Some(((tls_listener, _), certs)) if cfg.http3.enabled => {
            let addr = tls_listener.local_addr()?;
            let quic = crate::listener::quic::QuicListener::bind(addr, certs.clone(), cfg.http3)
                .map_err(|e| anyhow::anyhow!("http3 (UDP) {addr}: {e}"))?;
            Some(quic)
        }
        _ => None,
    };
    let admin = match (activated.admin, cfg.admin) {
        (Some(l), _) => Some((adopt(l, "admin")?, true)),
        (None, Some(addr)) => Some(listen_on(None, "admin", "admin", addr).await?),
        (None, None) => None,
    };
    // Tests and scripts read these lines to find the ports.
    let announce = |role: &str, (l, activated): &(tokio::net::TcpListener, bool), line: &str| {
        let addr = l.local_addr()?;
        println!("sluice: {line}://{addr}");
        if *activated {
            tracing::info!(role, %addr, "listening on a socket passed by socket activation");
        }
        anyhow::Ok(())
    };
    announce("http", &listener, "listening on http")?;
    if let Some((tls_listener, _)) = &tls {
        announce("https", tls_listener, "listening on https")?;
        if crate::tls::kernel_offers_ktls() {
            tracing::info!(
                "the kernel offers kTLS, but sluice does not hand sessions to it yet: \
                 TLS connections take the copying path"
            );
        } else {
            tracing::info!(
                "no kTLS in this kernel ({} lacks `tls`): TLS connections take the copying path",
                crate::tls::AVAILABLE_ULP
            );
        }
    }
    if let Some(quic) = &quic {
        println!("sluice: listening on h3://{}", quic.local_addr()?);
        let offload = quic.offload;
        if offload.gso_segments > 1 || offload.gro_segments > 1 {
            tracing::info!(
                gso_segments = offload.gso_segments,
                gro_segments = offload.gro_segments,
                "HTTP/3: the kernel offers UDP segmentation offload (GSO/GRO): \
                 several QUIC packets per system call"
            );
        } else {
            tracing::info!(
                "HTTP/3: no UDP segmentation offload (GSO/GRO) on this kernel: \
                 one QUIC packet per system call"
            );
        }
    }
    if let Some(admin) = &admin {
        announce("admin", admin, "admin on http")?;
    }
    let (listener, tls) = (listener.0, tls.map(|((l, _), certs)| (l, certs)));
    if let Some((admin, _)) = admin {
        tokio::spawn(crate::admin::serve(app.clone(), certs.clone(), admin));
    }
    {
        let (app, certs) = (app.clone(), certs.clone());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Err(e) = crate::admin::reload(app.clone(), certs.clone()).await {
                    tracing::error!("SIGHUP reload refused: {e}");
                }
            }
        });
    }
    {
        let loaded = app.default.loaded();
        let policy = &loaded.policy;
        let caps = policy.capabilities();
        tracing::info!(
            root = %app.default.root.path().display(),
            policy = policy.name(),
            wit = %format!("sluice:policy@{}", policy.version()),
            reusable = caps.reusable,
            "serving"
        );
    }
    let limits = crate::listener::ConnectionLimits {
        timeouts: cfg.timeouts(),
        max_connections: cfg.max_connections,
    };
    let grace = std::time::Duration::from_millis(cfg.shutdown_timeout_ms);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!(signal, "shutdown requested");
    };
    let access_log = app.access_log.clone();
    crate::listener::run(app, listener, tls, quic, limits, shutdown, grace).await?;
    Ok(access_log)
}
