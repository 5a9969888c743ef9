//! Host bindings generated from `wit/policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
});

pub use self::sluice::policy::types;
