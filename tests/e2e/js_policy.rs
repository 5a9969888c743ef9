//! A policy in JavaScript: `tests/policies/js/app.js`, built with
//! ComponentizeJS, served by the real server. It is the Python example
//! (`python_policy.rs`) line for line, its `fallback` rule (a
//! `sluice:policy@0.3.0` rewrite) included, so the same checks apply; and an
//! interpreter's warm-up is the case for `warmup-ms`.
//!
//! The component is built outside cargo (`tests/policies/js/build.sh`, which
//! needs Node and npm); the test runner builds it and passes its path in
//! `SLUICE_JS_POLICY`.

use std::path::PathBuf;

use crate::harness::*;
use crate::python_policy::{
    behaves_as_the_example, follows_the_fallback_rule, site, with_fallback_hosts,
};

fn js_policy() -> PathBuf {
    example_policy(
        "SLUICE_JS_POLICY",
        option_env!("SLUICE_JS_POLICY"),
        "tests/policies/js/build.sh",
    )
}

/// A deadline a warm call meets with room to spare (`decide` takes
/// 0.1-0.4 ms of CPU here; none of 10,000 calls under four CPU hogs failed
/// it), but that a new instance's warm-up does not: instantiating the
/// component (the first time, wasmtime also lays out its 12 MB memory
/// image), `configure`, and a first `decide` that compiles the JavaScript it
/// runs take 2-5 ms of CPU together, and instantiation alone more than 3 ms
/// at load. Before `warmup-ms`, each of those steps had the request's
/// deadline, and this server did not start; a busy machine did the same to
/// the default 10 ms deadline (issue 16: the first request after start was
/// a 503).
const TIGHT: &str = r#"
[sandbox]
deadline-ms = 2

[policy]
cache-default = "max-age=600"
"#;

#[test]
fn js_policy_serves_its_first_request_and_files_like_the_python_one() {
    let policy = js_policy();
    let dir = site();
    let config = with_fallback_hosts(TIGHT, &policy, dir.path());
    let server = Server::start_with(
        dir.path(),
        Options {
            policy: Some(&policy),
            config: Some(&config),
            ..Options::default()
        },
    );
    // The first request after start runs on a new instance (the canary's
    // is not kept), under the warm-up budget.
    let res = client().get(server.url("/style.css")).send().unwrap();
    assert_eq!(res.status(), 200, "{}", server.logs());
    assert_eq!(res.headers()["cache-control"], "max-age=86400");
    assert_eq!(res.text().unwrap(), "body { color: teal }\n");
    assert_eq!(server.stat("policy_traps"), 0, "{}", server.logs());
    server.expect_log("new instance warmed up");

    behaves_as_the_example(&server, dir.path());
    follows_the_fallback_rule(&server, dir.path());
    assert_eq!(server.stat("policy_traps"), 0, "{}", server.logs());
}
