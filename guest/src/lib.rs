//! sluice's default response policy, a `sluice:policy@0.3.0` component.
//!
//! `bindings` holds what wit-bindgen generates from `wit/policy.wit`; the
//! policy logic works on those WIT types directly (re-exported, with a few
//! helpers, from `types`), on every target, so `cargo test -p sluice-guest`
//! runs it natively. `component` implements the world's exports; only its
//! `export!` is wasm-only.
//!
//! `policy::decide` orchestrates; each HTTP rule lives in a module named for
//! it, and the parsers (`range`, `accept_encoding`, `etag`, `http_date`) are
//! public so the fuzz targets in `guest/fuzz` can reach them.
//!
//! `rules` is a site's rules (SPA fallback, error pages, clean URLs,
//! directory listings, `_redirects`, `_headers`), compiled at `configure`
//! into `Config::rules`; `policy::decide` applies them in the order its
//! header documents, with `hop` (what each internal rewrite is for),
//! `listing` (a directory listing's response) and `header_rules` (the
//! `_headers` fields merged into a decision).

pub mod accept_encoding;
pub mod bindings;
pub mod cache_control;
pub mod coding;
pub mod component;
pub mod conditional;
pub mod config;
pub mod content_type;
pub mod dotfiles;
pub mod etag;
pub mod fields;
pub mod header_rules;
pub mod hop;
pub mod http_date;
pub mod listing;
pub mod location;
pub mod negotiate;
pub mod policy;
pub mod range;
pub mod rules;
pub mod types;
