//! End-to-end tests: the real `sluice` binary on 127.0.0.1, real clients
//! (reqwest, raw TCP, curl), real files. One test binary (each links
//! wasmtime), one module per area.

mod h2raw;
mod harness;

mod access_log;
mod caches;
mod check;
mod conformance;
mod embed;
mod h2_attacks;
mod h2_writes;
mod http3;
mod isolation;
mod js_policy;
mod lifecycle;
mod listings;
mod metrics;
mod paths;
mod policy_text;
mod python_policy;
mod reuse;
mod rewrites;
mod sandbox;
mod setting_files;
mod site_rules;
mod skeleton;
mod startup;
mod tenants;
mod tls;
mod transfer;
mod versions;
