//! Settings read from files (`name = { file = "PATH" }`): relative to the
//! configuration file's directory, read at start-up and at every reload,
//! at most 1 MiB of UTF-8 (refused naming the setting, the file and the
//! limit; on a reload the old policy keeps serving). The default policy's
//! `redirects` from a site's `_redirects` file is the example.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn redirect(server: &Server, path: &str) -> (u16, String) {
    // The harness's client follows no redirects.
    let res = client().get(server.url(path)).send().unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status().as_u16(), location)
}

/// The configuration the harness writes lives in the temporary directory:
/// `dir`'s path relative to it.
fn relative(dir: &Path) -> String {
    assert_eq!(dir.parent(), Some(std::env::temp_dir().as_path()));
    dir.file_name().unwrap().to_str().unwrap().to_owned()
}

#[test]
fn a_setting_file_is_read_at_start_and_at_every_reload_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("_redirects");
    std::fs::write(&file, "/old /new 301\n").unwrap();
    let config = format!(
        "[policy]\nredirects = {{ file = \"{}/_redirects\" }}\n",
        relative(dir.path())
    );
    let server = Server::start_with(
        dir.path(),
        Options {
            config: Some(&config),
            ..Options::default()
        },
    );
    assert_eq!(redirect(&server, "/old"), (301, "/new".into()));
    // Edited: the next reload reads it.
    std::fs::write(&file, "/old /newer 302\n").unwrap();
    assert_eq!(
        redirect(&server, "/old"),
        (301, "/new".into()),
        "not watched"
    );
    let (status, _) = server.reload();
    assert_eq!(status, 200);
    assert_eq!(redirect(&server, "/old"), (302, "/newer".into()));
    // Over 1 MiB: the reload is refused naming the setting, the file and
    // the limit, and the policy loaded before keeps serving.
    let mut big = String::from("/old /biggest 301\n");
    while big.len() <= 1 << 20 {
        big.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&file, &big).unwrap();
    let (status, body) = server.reload();
    assert_ne!(status, 200, "{body}");
    server.expect_log("policy setting `redirects`");
    server.expect_log(
        "is larger than 1048576 bytes (1 MiB), the limit of a setting read from a file",
    );
    assert_eq!(redirect(&server, "/old"), (302, "/newer".into()));
    // Not UTF-8: refused too.
    std::fs::write(&file, b"/old /x 301\n\xff\n").unwrap();
    assert_ne!(server.reload().0, 200);
    server.expect_log("is not UTF-8 text");
    assert_eq!(redirect(&server, "/old"), (302, "/newer".into()));
}

#[test]
fn a_start_with_a_bad_setting_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let run = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(sluice_bin())
            .arg("serve")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Over 1 MiB, relative to the configuration's own directory.
    std::fs::write(dir.path().join("big"), "x".repeat((1 << 20) + 1)).unwrap();
    let stderr = run("[policy]\nredirects = { file = \"big\" }\n");
    assert!(
        stderr.contains("policy setting `redirects`")
            && stderr.contains(&dir.path().join("big").display().to_string())
            && stderr.contains("1 MiB"),
        "{stderr}"
    );
    let stderr = run("[policy]\nredirects = { file = \"nope\" }\n");
    assert!(
        stderr.contains("cannot read") && stderr.contains("nope"),
        "{stderr}"
    );
    // Under 1 MiB but 100,000 rules: the policy refuses it, naming its limit.
    let rules: String = (0..100_000).map(|i| format!("/{i} /b\n")).collect();
    assert!(rules.len() < 1 << 20);
    std::fs::write(dir.path().join("many"), rules).unwrap();
    let stderr = run("[policy]\nredirects = { file = \"many\" }\n");
    assert!(
        stderr.contains("more than 10000 rules (the limit)"),
        "{stderr}"
    );
    let stderr = run("[policy]\nredirects = { path = \"many\" }\n");
    assert!(
        stderr.contains("a table must be { file = \"PATH\" }"),
        "{stderr}"
    );
}
