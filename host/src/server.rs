//! Listening, accepting, and running hyper on each connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};

use crate::config::{policy_settings, Config};
use crate::policy::{self, Sandbox};
use crate::serve::{self, App, Conn, Site, SiteSpec};
use crate::transfer::zerocopy::SendfileIo;
use crate::transfer::Channel;

/// Builds the application (sandbox, sites, policies) from a configuration.
pub fn build_app(config: &Config) -> anyhow::Result<Arc<App>> {
    // The pool is shared by every site's policy: the configured figure is a
    // floor, so adding tenants cannot starve them into 503s.
    let mut sandbox_config = config.sandbox;
    let sites = 1 + config.vhost.len() as u32;
    let needed = sites.saturating_mul(policy::slots_per_policy());
    if needed > sandbox_config.instances {
        tracing::info!(
            configured = sandbox_config.instances,
            needed,
            "sandbox.instances raised for the number of sites"
        );
        sandbox_config.instances = needed;
    }
    let sandbox = Sandbox::new(&sandbox_config)
        .map_err(|e| anyhow::anyhow!("cannot set up wasmtime: {e:#}"))?;
    let root = config
        .root
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no root directory given"))?;
    let limits = config.sandbox.limits();
    let default = Site::open(
        &sandbox,
        SiteSpec {
            root,
            policy_file: config.policy_file.clone(),
            settings: policy_settings(&config.policy),
            limits,
        },
    )?;
    let mut vhosts = HashMap::new();
    for v in &config.vhost {
        let spec = SiteSpec {
            root: v.root.clone(),
            policy_file: v.policy_file.clone(),
            settings: policy_settings(&v.policy),
            limits: crate::config::SandboxLimits {
                deadline: v.deadline_ms.map_or(limits.deadline, Duration::from_millis),
                memory: v
                    .memory
                    .map_or(limits.memory, |m| m.0.min(config.sandbox.memory.0)),
            },
        };
        let site =
            Site::open(&sandbox, spec).map_err(|e| anyhow::anyhow!("vhost {}: {e:#}", v.host))?;
        vhosts.insert(v.host.to_ascii_lowercase(), Arc::new(site));
    }
    Ok(Arc::new(App {
        sandbox,
        transfer: config.transfer,
        default: Arc::new(default),
        vhosts,
    }))
}

/// Accepts connections forever.
pub async fn serve(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move { connection(app, tcp, peer).await });
    }
}

/// Serves one plain-TCP HTTP/1 connection.
async fn connection(app: Arc<App>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let (io, link) = SendfileIo::new(tcp, app.transfer.sendfile_max_chunk.0 as usize);
    let service = service_fn(move |req| {
        let response = serve::handle(
            &app,
            Conn {
                tls: false,
                channel: Channel {
                    zero_copy: Some(&link),
                },
            },
            req,
        );
        std::future::ready(response)
    });
    let result = http1::Builder::new()
        // Queued (vectored) writes are what the zero-copy path relies on:
        // see transfer::zerocopy. Never turn them off here, and never enable
        // `pipeline_flush`: both switch hyper to its flattening writer, which
        // reads (copies) body chunks.
        .writev(true)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(io, service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Binds the listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
