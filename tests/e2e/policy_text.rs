//! Issue 16: policy text is data. A policy's `configure` error made of ESC,
//! CR/LF and BEL sequences (a forged, coloured log line) and 1 MiB long
//! reaches the start-up error, `sluice check`'s terminal, the server log and
//! the `POST /reload` reply escaped and cut to a bounded length.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;
use crate::sandbox::{evil, install, install_bytes};

/// The length of the evil policy's `configure` error (`fail-configure-bytes`).
const MESSAGE: usize = 1 << 20;

/// What a policy said must never reach a reader raw: ESC (terminal control
/// sequences), BEL, CR (overwriting a line), or the forged line starting a
/// line of its own; and it is cut (the policy's message is 1 MiB).
fn assert_shown_safely(what: &str, text: &[u8], limit: usize) {
    let shown = String::from_utf8_lossy(text);
    for (byte, name) in [(0x1b, "ESC"), (0x07, "BEL"), (b'\r', "CR")] {
        assert!(
            !text.contains(&byte),
            "{what}: a raw {name} reached the reader:\n{}",
            &shown[..shown.len().min(2000)]
        );
    }
    assert!(
        !shown.contains("\nINFO sluice: all good"),
        "{what}: the policy forged a line"
    );
    assert!(
        text.len() < limit,
        "{what}: {} bytes shown of a {MESSAGE}-byte message",
        text.len()
    );
    // It is shown, escaped, with a note of what was cut.
    assert!(
        shown.contains("\\x1B[2J\\x1B[31mrefused\\x0D\\x0AINFO sluice: all good\\x07"),
        "{what}: {shown}"
    );
    assert!(shown.contains("more bytes not shown]"), "{what}: {shown}");
}

fn config(dir: &Path, settings: &str) -> std::path::PathBuf {
    let file = dir.join("sluice.toml");
    std::fs::write(
        &file,
        format!("[policy]\n{settings}fail-configure-bytes = {MESSAGE}\n"),
    )
    .unwrap();
    file
}

/// Runs `sluice ARGS` (no backtraces: the message alone is the subject).
fn sluice(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap()
}

#[test]
fn a_refusal_at_start_and_in_check_is_escaped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "fail-configure = true\n");
    let evil = evil();

    let out = sluice(&[
        "serve".as_ref(),
        dir.path().as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--policy".as_ref(),
        evil.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert_shown_safely("start-up error", &out.stderr, 16 << 10);
    assert!(out.stdout.is_empty());

    let out = sluice(&[
        "check".as_ref(),
        evil.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert_shown_safely("sluice check (stderr)", &out.stderr, 16 << 10);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_refusal_on_reload_is_escaped_and_bounded_in_the_log_and_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let policy = dir.path().join("policy.wasm");
    install(&evil(), &policy);
    // The evil policy takes these settings (it is not told to fail)...
    let config = format!(
        "policy-file = {:?}\n[policy]\nfail-configure-bytes = {MESSAGE}\n",
        policy.display().to_string()
    );
    let server = Server::start_with(
        &root,
        Options {
            config: Some(&config),
            ..Options::default()
        },
    );
    assert_eq!(raw_status(&raw_get(server.addr, "/x")), 200);
    // ...and a copy patched to refuse every `configure` (see the fixture)
    // refuses them with its 1 MiB message.
    let bytes = std::fs::read(evil()).unwrap();
    let marker = b"sluice-evil-refuse:0";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the evil policy's marker");
    let mut patched = bytes;
    patched[at + marker.len() - 1] = b'1';
    install_bytes(&patched, &policy);

    let (status, reply) = server.reload();
    assert_eq!(status, 422, "{reply}");
    assert_shown_safely("/reload reply", reply.as_bytes(), 16 << 10);
    server.expect_log("policy reload refused");
    let logs = server.logs();
    assert_shown_safely("server log", logs.as_bytes(), 256 << 10);
    // The old policy keeps serving.
    assert_eq!(raw_status(&raw_get(server.addr, "/x")), 200);
}
