//! sluice: a static-file HTTP server whose response policy is a sandboxed
//! WebAssembly component and whose transfer engine is native.
//!
//! # The library
//!
//! [`Sluice`] is the whole request flow as a `tower` and `hyper` service,
//! built by [`Sluice::builder`] from a root, a policy and limits (the
//! configuration types below, as the `sluice` command's TOML file sets
//! them), for a platform to mount in its own hyper or axum server; its
//! responses' body is [`Body`]. A platform that accepts plain TCP itself
//! may serve connections with [`SendfileIo`] and hand the
//! [`ZeroCopyLink`] it returns to the service in a [`ConnectionInfo`], so
//! file bodies leave by `sendfile(2)`. That is the whole public API; the
//! rest of the crate is the `sluice` command's.
//!
//! # The layers
//!
//! A request flows through the crate's modules in this order:
//!
//! 1. `listener` binds and accepts (plain and TLS over TCP, QUIC over UDP
//!    in `listener::quic`), holds the connection cap, pauses when
//!    descriptors run out, and shuts down gracefully;
//! 2. `connection` drives one connection: the TLS handshake, HTTP/1 by hyper,
//!    HTTP/2 by `http2` or HTTP/3 by `http3`, the timeouts (`timeouts`),
//!    plain TCP wrapped in [`SendfileIo`];
//! 3. `service` ([`Sluice`]) is the seam: each request's host is parsed once
//!    (421 on a TLS connection whose certificate is not the host's; the site
//!    by host), and its access-log line (`access_log`) is kept;
//! 4. `handler` answers one request for one site (built by `app`):
//!    `resolve` normalizes the path and opens what it names beneath the
//!    root, `policy` calls the tenant's component (sandboxed, time- and
//!    memory-limited) or the decision cache answers, `decision` validates
//!    the untrusted decision into a plan;
//! 5. `transfer` executes the plan: zero-copy where the connection allows
//!    it, otherwise overlapped large-chunk reads (optionally compressed).
//!
//! Each name says what the layer is: one *listener* for many connections,
//! one *connection* for many requests, one *service* call and one
//! *handler* run per request; `app` is what they all share.

pub(crate) mod access_log;
pub(crate) mod activation;
pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod check;
pub(crate) mod cli;
pub(crate) mod coding;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod contract;
#[cfg(test)]
mod counting_alloc;
pub(crate) mod date;
pub(crate) mod decision;
pub(crate) mod descriptors;
pub(crate) mod handler;
pub(crate) mod http2;
pub(crate) mod http3;
pub(crate) mod listener;
pub(crate) mod policy;
pub(crate) mod policy_text;
pub(crate) mod preface;
pub(crate) mod resolve;
pub(crate) mod runtime;
pub(crate) mod service;
pub(crate) mod shared_cache;
pub(crate) mod stats;
pub(crate) mod timeouts;
pub(crate) mod tls;
pub(crate) mod transfer;

pub use app::{SiteError, StartError};
pub use config::{
    AccessLogFormat, AccessLogTarget, CacheConfig, Config, ConfigError, SandboxConfig,
    TransferConfig,
};
pub use service::{Body, BuildError, Builder, ConnectionInfo, Sluice};
pub use transfer::zerocopy::{SendfileIo, ZeroCopyLink};

/// The `sluice` command (`main.rs` calls it): not API.
#[doc(hidden)]
pub use cli::main as cli_main;

/// What `host/benches` and the e2e tests reach inside the crate for: not
/// API, no stability promised, hidden from the documentation. A hidden
/// module rather than a cargo feature: a feature would make `cargo test` and
/// `cargo bench` build another `sluice` library than `cargo build` does
/// (and everything depending on it again: issue 17 item 7), and benches
/// would need `--features` to build at all. The fuzz target needs nothing:
/// it includes `resolve/normalize.rs` by path.
#[doc(hidden)]
pub mod internals {
    pub mod http2 {
        pub use crate::date::now as date;
        pub use crate::http2::{Coalesce, Settings};
    }
    pub mod policy {
        pub use crate::contract::{host_limits, wit};
        pub use crate::policy::{wasmtime_config, Fields, Policy, Sandbox, DEFAULT_POLICY};
    }
    pub mod resolve {
        pub use crate::resolve::{normalize, Found, NormalPath, Root};
    }
    pub mod decision {
        pub use crate::decision::validate;
    }
    pub mod handler {
        pub use crate::decision::reuse::decisions;
        pub use crate::decision::reuse::Reused;
        pub use crate::handler::request::{entry_to_wit, to_wit, write_key};
        pub use crate::handler::DecisionCache;
    }
    pub mod stats {
        pub use crate::stats::get;
    }
}
