//! The one recipe for building a workspace package into a `wasm32-wasip2`
//! component, used by `host/build.rs` (the default policy the binary embeds)
//! and by the e2e harness (`tests/e2e/harness.rs`: the misbehaving fixtures
//! of `tests/evil-policy`), so both build alike, into one target directory,
//! sharing what they compile. Each includes this file by `#[path]`: it uses
//! `std` alone.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cargo build` of `package` for `wasm32-wasip2`, run from `workspace`
/// with `cargo`, and where its component will be once it succeeds. The
/// nested cargo uses its own target directory (`target/guest-build`): a
/// build script sharing the outer one would deadlock on cargo's
/// build-directory lock.
pub fn command(cargo: impl AsRef<OsStr>, workspace: &Path, package: &str) -> (Command, PathBuf) {
    let target_dir = workspace.join("target").join("guest-build");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            package,
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
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    (cmd, wasm)
}
