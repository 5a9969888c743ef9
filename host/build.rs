//! Builds the default policy (`guest/`) for `wasm32-wasip2` and points
//! `SLUICE_DEFAULT_POLICY` at it, so the `sluice` binary embeds it.
//!
//! The nested cargo uses its own target directory: sharing the outer one would
//! deadlock on cargo's build-directory lock.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("host/ lives in the workspace")
        .to_owned();
    let target_dir = workspace.join("target").join("guest-build");
    for path in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
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
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "sluice-guest",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // The outer build's flags are for the host, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // A small component: it is compiled by wasmtime at every start-up.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    let status = cmd.status().expect("run cargo for the guest");
    if !status.success() {
        panic!(
            "building the default policy (guest/) for wasm32-wasip2 failed; \
             is the target installed? (`rustup target add wasm32-wasip2`). To build the host \
             while guest/ is mid-edit, set SLUICE_GUEST_WASM to a prebuilt component, \
             e.g. SLUICE_GUEST_WASM=/tmp/sluice-guest-snapshot.wasm"
        );
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join("sluice_guest.wasm");
    assert!(wasm.exists(), "{} was not produced", wasm.display());
    println!("cargo:rustc-env=SLUICE_DEFAULT_POLICY={}", wasm.display());
}
