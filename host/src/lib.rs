//! sluice: a static-file HTTP server whose response policy is a sandboxed
//! WebAssembly component and whose transfer engine is native.
//!
//! A request flows through the modules in this order:
//!
//! 1. [`server`] accepts a connection and hands it to hyper, wrapping plain TCP
//!    sockets in [`transfer::zerocopy::SendfileIo`] so file bodies can leave by
//!    `sendfile(2)`;
//! 2. [`serve`] turns the request into the policy's view of it, using
//!    [`resolve`] to normalize the path and open what it names beneath the root;
//! 3. [`policy`] calls the tenant's component (sandboxed, time- and
//!    memory-limited) for a decision;
//! 4. [`decision`] validates that untrusted decision into a [`decision::Plan`];
//! 5. [`transfer`] executes the plan: zero-copy where the connection allows it,
//!    otherwise overlapped large-chunk reads (optionally compressed).
//!
//! [`service::Sluice`] is the whole flow as a `tower`/`hyper` service, for a
//! platform to mount in its own server; `sluice serve` runs it too. Each
//! response's line goes to the [`access_log`] when it is on.

pub mod access_log;
pub mod activation;
pub mod admin;
pub mod check;
pub mod coding;
pub mod config;
#[cfg(test)]
mod counting_alloc;
pub mod date;
pub mod decision;
pub mod descriptors;
pub mod http2;
pub mod policy;
pub mod policy_text;
pub mod preface;
pub mod resolve;
pub mod serve;
pub mod server;
pub mod service;
pub mod shared_cache;
pub mod stats;
pub mod timeouts;
pub mod tls;
pub mod transfer;
