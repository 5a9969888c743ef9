//! The bindings wit-bindgen generates from `wit/policy.wit`
//! (`sluice:policy@0.3.0`, world `policy`): the WIT types
//! (`sluice::policy::types`, which the policy logic and its tests use as they
//! are, on every target, through `crate::types`), and the `Guest` trait and
//! `export!` macro that make the crate a component (`component.rs`).

wit_bindgen::generate!({
    path: "../wit/policy.wit",
    world: "policy",
    // Values are compared (codings in lists, decisions in tests) and byte
    // ranges sorted. Every type already gets `Clone` and `Debug`.
    additional_derives: [PartialEq, Eq, PartialOrd, Ord],
});
