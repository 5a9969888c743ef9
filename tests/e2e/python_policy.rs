//! A third-party policy in another language: `tests/policies/python/app.py`,
//! built with componentize-py, served by the real server. Cache-Control and
//! Content-Type by extension, a strong ETag and 304s, 404, 405, HEAD, the
//! decision cache answering repeated requests (the policy declares itself
//! reusable), and its one site rule, the single-page-app `fallback` (a
//! `rewrite` outcome of `sluice:policy@0.3.0`), on a virtual host that sets it.
//!
//! The component is built outside cargo (`tests/policies/python/build.sh`,
//! which needs python3 and pip); the test runner builds it and passes its path
//! in `SLUICE_PYTHON_POLICY`.
//!
//! Compiling the ~19 MB component takes wasmtime 15-25 s on a small machine,
//! so the whole module runs against one server, in one test: its virtual
//! hosts run the same component with other settings (compiled once).

use std::path::{Path, PathBuf};

use crate::harness::*;

/// The CPython component starts with 12.8 MiB of linear memory (205 pages,
/// the pre-initialized interpreter) and did not grow over 3000 calls; calls
/// took ~1 ms (5 ms worst seen on a loaded 2-core machine). Both limits leave
/// generous room above that.
const CONFIG: &str = r#"
[sandbox]
memory = "32m"
deadline-ms = 100

[policy]
cache-default = "max-age=600"
"#;

/// The virtual host whose policy sets `fallback = "/index.html"`.
const SPA: &str = "spa.example";
/// The virtual host whose `fallback` names a file that does not exist.
const GONE: &str = "gone.example";

/// What Chromium sends as `Accept` when it navigates.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                              image/avif,image/webp,image/apng,*/*;q=0.8";

/// `config` (the default site's: no `fallback`) and two virtual hosts
/// serving `root` with the same `policy`: `spa.example` with the fallback,
/// `gone.example` with a fallback file that is missing.
pub(crate) fn with_fallback_hosts(config: &str, policy: &Path, root: &Path) -> String {
    let mut out = config.to_owned();
    for (host, fallback) in [(SPA, "/index.html"), (GONE, "/nope.html")] {
        out.push_str(&format!(
            "\n[[vhost]]\nhost = \"{host}\"\nroot = \"{}\"\npolicy-file = \"{}\"\n\
             [vhost.policy]\ncache-default = \"max-age=600\"\nfallback = \"{fallback}\"\n",
            root.display(),
            policy.display(),
        ));
    }
    out
}

fn python_policy() -> PathBuf {
    example_policy(
        "SLUICE_PYTHON_POLICY",
        option_env!("SLUICE_PYTHON_POLICY"),
        "tests/policies/python/build.sh",
    )
}

pub(crate) fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("style.css"), "body { color: teal }\n").unwrap();
    std::fs::write(root.join("app.js"), "console.log('sluice')\n").unwrap();
    std::fs::write(root.join("page.html"), "<!doctype html><p>hello</p>\n").unwrap();
    std::fs::write(root.join("logo.png"), pseudo_random(3000, 1)).unwrap();
    std::fs::write(root.join("data.bin"), pseudo_random(200_000, 2)).unwrap();
    std::fs::create_dir(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/index.html"), "<p>docs</p>\n").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    // The single-page app the fallback serves.
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>app</title><script src=/app.js></script>\n",
    )
    .unwrap();
    dir
}

#[test]
fn python_policy_serves_files_with_cache_control_by_extension() {
    let policy = python_policy();
    let dir = site();
    let config = with_fallback_hosts(CONFIG, &policy, dir.path());
    let server = Server::start_with(
        dir.path(),
        Options {
            policy: Some(&policy),
            config: Some(&config),
            ..Options::default()
        },
    );
    behaves_as_the_example(&server, dir.path());
    follows_the_fallback_rule(&server, dir.path());
}

/// What the example policy does (`tests/policies/python/README.md`), for
/// this one and its JavaScript twin (`js_policy.rs`), served from `site()`.
pub(crate) fn behaves_as_the_example(server: &Server, root: &Path) {
    whole_files_with_headers_by_extension(server, root);
    if_none_match_gives_304(server);
    missing_and_directories(server);
    other_methods_get_405(server);
    head_is_get_without_body(server, root);
    repeated_requests_come_from_the_decision_cache(server);
}

/// The example's site rule, `fallback`, on a server configured by
/// `with_fallback_hosts`.
pub(crate) fn follows_the_fallback_rule(server: &Server, root: &Path) {
    fallback_serves_the_app_to_navigations_only(server, root);
    fallback_is_off_without_the_setting(server);
    fallback_to_a_missing_file_is_the_real_404(server);
}

fn whole_files_with_headers_by_extension(server: &Server, root: &Path) {
    for (path, content_type, cache_control) in [
        ("/style.css", "text/css; charset=utf-8", "max-age=86400"),
        ("/app.js", "text/javascript; charset=utf-8", "max-age=86400"),
        ("/page.html", "text/html; charset=utf-8", "no-cache"),
        ("/logo.png", "image/png", "max-age=86400"),
        // Not in the table: the `cache-default` setting.
        ("/data.bin", "application/octet-stream", "max-age=600"),
        ("/docs/", "text/html; charset=utf-8", "no-cache"),
    ] {
        let res = client().get(server.url(path)).send().unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["cache-control"], cache_control, "{path}");
        let etag = h["etag"].to_str().unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "{path}: strong ETag, got {etag}"
        );
        assert!(
            h["last-modified"].to_str().unwrap().ends_with(" GMT"),
            "{path}"
        );
        let file = if path.ends_with('/') {
            root.join(&path[1..]).join("index.html")
        } else {
            root.join(&path[1..])
        };
        let expected = std::fs::read(file).unwrap();
        assert_eq!(h["content-length"], expected.len().to_string().as_str());
        let body = res.bytes().unwrap();
        assert_eq!(sha256(&body), sha256(&expected), "{path}: body bytes");
    }
}

fn if_none_match_gives_304(server: &Server) {
    let first = client().get(server.url("/style.css")).send().unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let res = client()
            .get(server.url("/style.css"))
            .header("if-none-match", &value)
            .send()
            .unwrap();
        assert_eq!(res.status(), 304, "If-None-Match: {value}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.headers()["cache-control"], "max-age=86400");
        assert!(res.bytes().unwrap().is_empty());
    }
    let res = client()
        .get(server.url("/style.css"))
        .header("if-none-match", "\"not-it\"")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
}

fn missing_and_directories(server: &Server) {
    for path in ["/nope.css", "/empty/", "/empty", "/docs/nope.html"] {
        let res = client().get(server.url(path)).send().unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
    let res = client().get(server.url("/docs")).send().unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/docs/");
}

fn other_methods_get_405(server: &Server) {
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let res = client()
            .request(method.parse().unwrap(), server.url("/style.css"))
            .body("x")
            .send()
            .unwrap();
        assert_eq!(res.status(), 405, "{method}");
        let allow = res.headers()["allow"].to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    }
}

fn head_is_get_without_body(server: &Server, root: &Path) {
    let get = client().get(server.url("/page.html")).send().unwrap();
    let head = client().head(server.url("/page.html")).send().unwrap();
    assert_eq!(head.status(), 200);
    for name in [
        "content-type",
        "content-length",
        "cache-control",
        "etag",
        "last-modified",
    ] {
        assert_eq!(get.headers().get(name), head.headers().get(name), "{name}");
    }
    // Over raw TCP, so nothing in a client library could hide a body.
    let raw = raw(
        server.addr,
        b"HEAD /page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.ends_with("\r\n\r\n"),
        "HEAD response carried a body: {text:?}"
    );
    let len = std::fs::metadata(root.join("page.html")).unwrap().len();
    assert!(
        text.contains(&format!("content-length: {len}\r\n")),
        "{text}"
    );
}

fn repeated_requests_come_from_the_decision_cache(server: &Server) {
    const N: u64 = 40;
    // The first request may be the one that fills the cache.
    assert_eq!(raw_status(&raw_get(server.addr, "/app.js")), 200);
    let calls = server.stat("policy_calls");
    let hits = server.stat("decision_cache_hits");
    for _ in 0..N {
        assert_eq!(raw_status(&raw_get(server.addr, "/app.js")), 200);
    }
    let calls = server.stat("policy_calls") - calls;
    let hits = server.stat("decision_cache_hits") - hits;
    assert!(
        hits >= N - 2,
        "{hits} of {N} repeated requests came from the decision cache \
         ({calls} policy calls)"
    );
    assert!(calls <= 2, "{calls} policy calls for {N} repeated requests");
}

fn get(
    server: &Server,
    host: &str,
    path: &str,
    accept: Option<&str>,
) -> reqwest::blocking::Response {
    let mut req = client().get(server.url(path)).header("host", host);
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    req.send().unwrap()
}

/// `fallback = "/index.html"`: a navigation to a missing route gets the
/// app's bytes with status 200 (the rewrite's hop decides the response);
/// anything else keeps its real 404.
fn fallback_serves_the_app_to_navigations_only(server: &Server, root: &Path) {
    let index = std::fs::read(root.join("index.html")).unwrap();
    let direct = get(server, SPA, "/index.html", Some(BROWSER_ACCEPT));
    assert_eq!(direct.status(), 200);
    let etag = direct.headers()["etag"].to_str().unwrap().to_owned();

    for path in ["/app/settings/42", "/app/settings/", "/route"] {
        let res = get(server, SPA, path, Some(BROWSER_ACCEPT));
        assert_eq!(res.status(), 200, "{path}: {}", server.logs());
        let h = res.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert_eq!(h["vary"], "Accept", "{path}");
        // The app file's own validator: a reload of the deep link revalidates.
        assert_eq!(h["etag"], etag.as_str(), "{path}");
        assert_eq!(res.bytes().unwrap(), index, "{path}: the app's bytes");
    }
    // `Accept: text/html` alone (curl -H, a crawler) is a navigation too.
    assert_eq!(get(server, SPA, "/a/b", Some("text/html")).status(), 200);

    // The reload of a deep link: 304 with the app's validator.
    let res = client()
        .get(server.url("/app/settings/42"))
        .header("host", SPA)
        .header("accept", BROWSER_ACCEPT)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], etag.as_str());
    assert_eq!(res.headers()["vary"], "Accept");

    // HEAD: the same head, no body, the app's length.
    let res = client()
        .head(server.url("/app/settings/42"))
        .header("host", SPA)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-length"],
        index.len().to_string().as_str()
    );

    for (path, accept) in [
        // A missing asset: its last segment has an extension.
        ("/assets/x.js", Some(BROWSER_ACCEPT)),
        ("/app/settings/42.json", Some(BROWSER_ACCEPT)),
        // Not navigations: fetch() for JSON, `*/*` alone, text/html refused,
        // a malformed weight, no Accept at all.
        ("/app/settings/42", Some("application/json")),
        ("/app/settings/42", Some("*/*")),
        ("/app/settings/42", Some("text/html;q=0")),
        ("/app/settings/42", Some("text/html;q=x")),
        ("/app/settings/42", None),
    ] {
        let res = get(server, SPA, path, accept);
        assert_eq!(res.status(), 404, "{path} with Accept {accept:?}");
        assert_eq!(res.headers()["vary"], "Accept", "{path}");
        assert_eq!(res.text().unwrap(), "not found\n", "{path}: not the app");
    }

    // What exists is served as it is: files, directories, their redirects.
    let res = get(server, SPA, "/style.css", Some(BROWSER_ACCEPT));
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().unwrap(), "body { color: teal }\n");
    let res = get(server, SPA, "/docs", Some(BROWSER_ACCEPT));
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/docs/");
    // A directory without an index is not missing: no fallback.
    assert_eq!(
        get(server, SPA, "/empty/", Some(BROWSER_ACCEPT)).status(),
        404
    );
    // Other methods are refused before any rule.
    let res = client()
        .post(server.url("/app/settings/42"))
        .header("host", SPA)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .unwrap();
    assert_eq!(res.status(), 405);

    // Both calls of the chain (the client's path, then the hop) are reusable:
    // a repeated deep link is answered from the decision cache.
    const N: u64 = 20;
    let calls = server.stat("policy_calls");
    for _ in 0..N {
        assert_eq!(
            get(server, SPA, "/app/settings/42", Some(BROWSER_ACCEPT)).status(),
            200
        );
    }
    let calls = server.stat("policy_calls") - calls;
    assert!(
        calls <= 2,
        "{calls} policy calls for {N} repeated deep links"
    );
}

/// The default site runs the same component without `fallback`: a deep link
/// is the real 404, and `Accept` is not even read (no `Vary`).
fn fallback_is_off_without_the_setting(server: &Server) {
    let res = get(
        server,
        "localhost",
        "/app/settings/42",
        Some(BROWSER_ACCEPT),
    );
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("vary").is_none(), "{:?}", res.headers());
    assert_eq!(res.text().unwrap(), "not found\n");
}

/// A fallback naming a file that is not there: the hop finds it missing and
/// answers the client's 404 (no second rewrite, no loop, no 500).
fn fallback_to_a_missing_file_is_the_real_404(server: &Server) {
    let res = get(server, GONE, "/app/settings/42", Some(BROWSER_ACCEPT));
    assert_eq!(res.status(), 404, "{}", server.logs());
    assert_eq!(res.text().unwrap(), "not found\n");
    assert_eq!(
        get(server, GONE, "/style.css", Some(BROWSER_ACCEPT)).status(),
        200
    );
}
