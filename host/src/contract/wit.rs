//! Host bindings generated from the WIT packages this host supports.
//!
//! The current contract, `wit/policy.wit` (`sluice:policy@0.3.0`), is what
//! the rest of the host speaks: its types are re-exported here and used as
//! `crate::contract::wit::*`. The frozen `wit/0.2.0/policy.wit` and
//! `wit/0.1.0/policy.wit` are generated beside it, and used only by the
//! sandbox's adapters of older policies (`policy/v0_2.rs`, `policy/v0_1.rs`).
//! Each package gets its own module because they define the same names.

/// `sluice:policy@0.3.0`: the generated `Policy`/`PolicyPre` for embedders
/// and benchmarks that drive a component directly.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/policy.wit",
        world: "policy",
    });
}

/// `sluice:policy@0.2.0`, frozen.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0/policy.wit",
        world: "policy",
    });
}

/// `sluice:policy@0.1.0`, frozen.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0/policy.wit",
        world: "policy",
    });
}

pub use v0_3::sluice::policy::types::*;

/// The package versions this host loads, newest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];
