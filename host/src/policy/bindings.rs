//! Host bindings generated from `wit/policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
});

pub use sluice::policy::types;
