//! sluice's default response policy.
//!
//! The logic is plain Rust over the types in `model`, a mirror of the WIT
//! contract, so `cargo test -p sluice-guest` runs it natively. Built for
//! `wasm32-wasip2`, `component` adds the wit-bindgen glue that makes it a
//! `sluice:policy@0.1.0` component.
//!
//! `policy::decide` orchestrates; each HTTP rule lives in a module named for
//! it, and the parsers (`range`, `accept_encoding`, `etag`, `http_date`) are
//! public so the fuzz targets in `guest/fuzz` can reach them.

pub mod accept_encoding;
pub mod cache_control;
pub mod conditional;
pub mod config;
pub mod content_type;
pub mod dotfiles;
pub mod etag;
pub mod fields;
pub mod http_date;
pub mod location;
pub mod model;
pub mod negotiate;
pub mod policy;
pub mod range;

#[cfg(target_arch = "wasm32")]
mod component;
