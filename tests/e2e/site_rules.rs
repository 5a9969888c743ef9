//! The default policy's site rules (issue 18's tables), end to end: the real
//! binary with `[policy]` settings and no `--policy`, so the built-in
//! component decides. Each table is what guest/README.md's "Site rules"
//! documents: error pages keep the error's status and never become 304 or
//! 206, clean URLs give each page one address, header rules apply to every
//! response for the client's path (a CORS preflight included), and
//! `_redirects` rules redirect, substitute and rewrite.

use reqwest::blocking::Response;

use crate::harness::*;

const INDEX: &str = "<!doctype html><title>app</title><p>the app\n";
const NOT_FOUND: &str = "<!doctype html><title>not here</title><p>custom 404 page\n";
const ABOUT: &str = "<!doctype html><title>about</title><p>about us\n";

/// A site every table uses; each test configures only its own setting.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("index.html"), INDEX).unwrap();
    std::fs::write(root.join("404.html"), NOT_FOUND).unwrap();
    std::fs::write(root.join("about.html"), ABOUT).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/index.html"), "docs\n").unwrap();
    std::fs::create_dir_all(root.join("api")).unwrap();
    std::fs::write(root.join("api/x.json"), "{\"x\":1}\n").unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("app/real.txt"), "a real file\n").unwrap();
    dir
}

fn start(dir: &tempfile::TempDir, policy: &str) -> Server {
    let config = format!("[policy]\n{policy}\n");
    Server::start_with(
        dir.path(),
        Options {
            config: Some(&config),
            ..Options::default()
        },
    )
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn location(server: &Server, path: &str) -> (u16, Option<String>) {
    let res = client().get(server.url(path)).send().unwrap();
    (res.status().as_u16(), header(&res, "location"))
}

/// The 404 page: the error's status, the page's bytes and type, none of the
/// page's validators; whatever the request's preconditions or ranges say.
fn assert_error_page(res: Response, what: &str) {
    assert_eq!(res.status().as_u16(), 404, "{what}");
    let content_type = header(&res, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: {content_type}"
    );
    assert_eq!(header(&res, "etag"), None, "{what}");
    assert_eq!(header(&res, "last-modified"), None, "{what}");
    assert_eq!(header(&res, "content-range"), None, "{what}");
    assert_eq!(res.text().unwrap(), NOT_FOUND, "{what}");
}

#[test]
fn error_pages_keep_the_error_status_and_never_turn_into_304_or_206() {
    let dir = site();
    let server = start(&dir, "error-pages = [\"404=/404.html\"]");
    let c = client();
    assert_error_page(c.get(server.url("/missing")).send().unwrap(), "plain");
    assert_error_page(
        c.get(server.url("/no/such/page.html")).send().unwrap(),
        "deep",
    );
    // The page itself, asked for, is an ordinary file with its validators.
    let page = c.get(server.url("/404.html")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let etag = header(&page, "etag").expect("the page has an ETag of its own");
    // Conditional requests: neither `*` nor the page's own ETag makes a 304.
    for tag in ["*", etag.as_str()] {
        let res = c
            .get(server.url("/missing"))
            .header("if-none-match", tag)
            .send()
            .unwrap();
        assert_error_page(res, &format!("If-None-Match: {tag}"));
    }
    // A range: the whole page, never 206.
    let res = c
        .get(server.url("/missing"))
        .header("range", "bytes=0-3")
        .send()
        .unwrap();
    assert_error_page(res, "Range");
    // A file that exists is untouched.
    let res = c.get(server.url("/about.html")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.text().unwrap(), ABOUT);
}

#[test]
fn clean_urls_serve_the_html_file_and_redirect_to_one_address() {
    let dir = site();
    let server = start(&dir, "clean-urls = true");
    let c = client();
    let res = c.get(server.url("/about")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(header(&res, "content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(res.text().unwrap(), ABOUT);
    assert_eq!(
        location(&server, "/about.html"),
        (301, Some("/about".into()))
    );
    // The query is kept.
    assert_eq!(
        location(&server, "/about.html?x=1"),
        (301, Some("/about?x=1".into()))
    );
    // An index name redirects to its directory.
    assert_eq!(
        location(&server, "/docs/index.html"),
        (301, Some("/docs/".into()))
    );
    // Nothing to clean: still a 404.
    assert_eq!(location(&server, "/nothing").0, 404);
}

#[test]
fn header_rules_apply_to_every_response_for_the_path_a_preflight_included() {
    let dir = site();
    let server = start(
        &dir,
        "headers = [\"/api/*\", \"  Access-Control-Allow-Origin: *\", \
         \"  Access-Control-Allow-Methods: GET, HEAD\"]",
    );
    let c = client();
    let cors = |res: &Response| {
        (
            header(res, "access-control-allow-origin"),
            header(res, "access-control-allow-methods"),
        )
    };
    let want = (Some("*".to_owned()), Some("GET, HEAD".to_owned()));
    let res = c.get(server.url("/api/x.json")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(cors(&res), want);
    assert_eq!(res.text().unwrap(), "{\"x\":1}\n");
    // A CORS preflight: OPTIONS is 204 with Allow, and the rules for its path.
    let res = c
        .request(reqwest::Method::OPTIONS, server.url("/api/x.json"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(header(&res, "allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    assert_eq!(cors(&res), want);
    // Every response for the path: a 404 under /api/ too.
    let res = c.get(server.url("/api/missing.json")).send().unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(cors(&res), want);
    // Not under /api/: none of them.
    let res = c.get(server.url("/about.html")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(cors(&res), (None, None));
}

#[test]
fn redirect_rules_redirect_substitute_and_rewrite() {
    let dir = site();
    let server = start(
        &dir,
        "redirects = [\"/old/*  /new/:splat  301\", \
         \"/blog/:year/:slug  /posts/:year-:slug  302\", \
         \"/app/*  /index.html  200\"]",
    );
    let c = client();
    let res = c.get(server.url("/old/a/b")).send().unwrap();
    assert_eq!(res.status().as_u16(), 301);
    assert_eq!(header(&res, "location").as_deref(), Some("/new/a/b"));
    // 301 and 308 get cache-default's Cache-Control.
    assert_eq!(
        header(&res, "cache-control").as_deref(),
        Some("max-age=3600")
    );
    // The query passes through to a target without one of its own.
    assert_eq!(
        location(&server, "/old/x?q=1"),
        (301, Some("/new/x?q=1".into()))
    );
    // Placeholders.
    assert_eq!(
        location(&server, "/blog/2024/hello"),
        (302, Some("/posts/2024-hello".into()))
    );
    // A placeholder is one whole segment: no match, the real 404.
    assert_eq!(location(&server, "/blog/2024").0, 404);
    // A 200 rule serves the target's bytes at the client's path.
    let res = c.get(server.url("/app/deep/link")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "location"), None);
    assert!(header(&res, "content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(res.text().unwrap(), INDEX);
    // Without `!`, a file that exists shadows the rule.
    let res = c.get(server.url("/app/real.txt")).send().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.text().unwrap(), "a real file\n");
}
