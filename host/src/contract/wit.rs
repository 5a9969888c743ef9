//! Host bindings generated from the WIT packages this host supports.
//!
//! The current contract, `wit/policy.wit` (`sluice:policy@0.2.0`), is what
//! the rest of the host speaks: its types are re-exported here and used as
//! `crate::contract::wit::*`. The frozen `wit/0.1.0/policy.wit` is generated
//! beside it, and used only by the sandbox's adapter of 0.1.0 policies (`policy/v0_1.rs`).
//! Each package gets its own module because both define the same names.

/// `sluice:policy@0.2.0`: the generated `Policy`/`PolicyPre` for embedders
/// and benchmarks that drive a component directly.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/policy.wit",
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

pub use v0_2::sluice::policy::types::*;

/// The package versions this host loads, newest first.
pub const SUPPORTED: &[&str] = &["0.2.0", "0.1.0"];
