//! `sluice check POLICY.wasm`: the policy author's check, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::*;

fn check(policy: &Path, config: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
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
    assert!(stdout.contains("sluice:policy@0.2.0"), "{stdout}");
    assert!(stdout.contains("\"accept-encoding\""), "{stdout}");
    assert!(stdout.contains("reusable:         true"), "{stdout}");
    assert!(stdout.contains("decide:           p50"), "{stdout}");

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
