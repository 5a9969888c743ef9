//! Builds the default policy (`guest/`) for `wasm32-wasip2` and points
//! `SLUICE_DEFAULT_POLICY` at it, so the `sluice` binary embeds it.
//!
//! The build itself is `build_component.rs`'s recipe, which the e2e harness
//! uses too.

use std::path::PathBuf;

#[path = "build_component.rs"]
mod build_component;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("host/ lives in the workspace")
        .to_owned();
    for path in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.lock",
        "host/build_component.rs",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    // Two checkouts sharing one target directory (git worktrees) share this
    // script's cached output too: rerun when the checkout changes, or one
    // would embed the other's component.
    println!("cargo:rerun-if-env-changed=CARGO_MANIFEST_DIR");
    // Escape hatch for working on the host while guest/ is mid-edit: embed an
    // already-built component instead of building one.
    println!("cargo:rerun-if-env-changed=SLUICE_GUEST_WASM");
    if let Some(prebuilt) = std::env::var_os("SLUICE_GUEST_WASM") {
        println!(
            "cargo:rustc-env=SLUICE_DEFAULT_POLICY={}",
            PathBuf::from(prebuilt).display()
        );
        return;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (mut cmd, wasm) = build_component::command(cargo, &workspace, "sluice-guest");
    let status = cmd.status().expect("run cargo for the guest");
    if !status.success() {
        panic!(
            "building the default policy (guest/) for wasm32-wasip2 failed; \
             is the target installed? (`rustup target add wasm32-wasip2`). To build the host \
             while guest/ is mid-edit, set SLUICE_GUEST_WASM to a prebuilt component, \
             e.g. SLUICE_GUEST_WASM=/tmp/sluice-guest-snapshot.wasm"
        );
    }
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    println!("cargo:rustc-env=SLUICE_DEFAULT_POLICY={}", wasm.display());
}
