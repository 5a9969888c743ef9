//! `sluice check POLICY.wasm`: the policy author's check, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::*;

fn check(policy: &Path, config: Option<&str>) -> Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("check").arg(policy).args(["--calls", "200"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    if let Some(text) = config {
        std::fs::write(file.path(), text).unwrap();
        cmd.arg("--config").arg(file.path());
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_policy_is_described() {
    let default = PathBuf::from(env!("SLUICE_DEFAULT_POLICY"));
    let out = check(&default, Some("[policy]\nmax-ranges = 4\n"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sluice:policy@0.3.0"), "{stdout}");
    assert!(stdout.contains("\"accept-encoding\""), "{stdout}");
    assert!(stdout.contains("reusable:         true"), "{stdout}");
    assert!(stdout.contains("listing:          never"), "{stdout}");
    assert!(stdout.contains("decide:           p50"), "{stdout}");

    // A policy answering a missing path with a rewrite (to its error page)
    // passes: a rewrite is checked as the server checks one.
    let out = check(
        &default,
        Some("[policy]\nerror-pages = [\"404=/404.html\"]\nautoindex = \"html\"\n"),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("listing:          up to 1024 entries"),
        "{stdout}"
    );

    let previous = workspace().join("tests/fixtures/policy-0.2.0.wasm");
    let out = check(&previous, None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sluice:policy@0.2.0"), "{stdout}");

    let old = workspace().join("tests/fixtures/policy-0.1.0.wasm");
    let out = check(&old, None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sluice:policy@0.1.0"), "{stdout}");
    assert!(stdout.contains("all headers and the query"), "{stdout}");
}

#[test]
fn a_bad_policy_is_refused_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, "not wasm").unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let default = PathBuf::from(env!("SLUICE_DEFAULT_POLICY"));
    let cases: [(&Path, Option<&str>, &str); 4] = [
        (&garbage, None, "not a valid WebAssembly component"),
        (&empty, None, "built against no sluice:policy package"),
        (
            &default,
            Some("[policy]\nno-such-setting = 1\n"),
            "policy refused its settings: unknown policy setting",
        ),
        (&dir.path().join("missing.wasm"), None, "cannot read policy"),
    ];
    for (policy, config, reason) in cases {
        let out = check(policy, config);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{}: {stdout}", policy.display());
        assert!(stderr.contains(reason), "{}: {stderr}", policy.display());
    }
}

/// `check` validates the decisions it gets for a real file, a directory and
/// a missing path as the server does: a policy whose answer for every file
/// breaks a rule (here it sets `content-length`, which the host computes)
/// passes its canary (a missing path), and before this `check` timed it and
/// said nothing, while the server answered 500 for every file.
#[test]
fn a_policy_whose_decisions_the_server_refuses_fails_the_check() {
    let evil = crate::sandbox::evil();
    let out = check(&evil, Some("[policy]\ninvalid-files = true\n"));
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("decide(GET /index.html), a file, returned a decision the server refuses")
            && stderr.contains("header \"content-length\" is computed by the host"),
        "{stderr}"
    );
    // Without the setting the same policy passes, its decisions checked.
    let out = check(&evil, None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
}

/// A component that imports `wasi:http` (what ComponentizeJS links unless
/// built with `--disable http fetch-event`) is refused with a message that
/// says so, not only that linking failed.
#[test]
fn a_component_importing_wasi_http_is_told_the_build_flag() {
    // The smallest such component: one import, an instance of an empty type.
    let name = b"wasi:http/types@0.2.0";
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    // Type section: one instance type with no declarations.
    component.extend_from_slice(&[7, 3, 1, 0x42, 0]);
    // Import section: that name, an instance of type 0.
    component.extend_from_slice(&[10, 5 + name.len() as u8, 1, 0, name.len() as u8]);
    component.extend_from_slice(name);
    component.extend_from_slice(&[5, 0]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("http.wasm");
    std::fs::write(&file, component).unwrap();
    let out = check(&file, None);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("imports `wasi:http/types@0.2.0`")
            && stderr.contains("--disable http fetch-event"),
        "{stderr}"
    );
}
