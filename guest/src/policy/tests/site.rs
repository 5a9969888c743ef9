//! `decide` with a site's rules (0.3.0): rewrites and the calls after them,
//! listings, header rules. `follow` plays the host's part of WIT "Rewrites"
//! over a site held in a map, so a whole chain is checked the way the host
//! will run it: at most `MAX_HOPS` rewrites, none to a path already decided.

use std::collections::BTreeMap;

use super::*;
use crate::hop::MAX_HOPS;
use crate::types::{EntryKind, Hop, Listing, ListingEntry, Rewrite, SettingValue};

/// A site: decoded path (without a trailing `/`, but `/` itself) → entry.
type Site = BTreeMap<String, Entry>;

fn site(entries: &[(&str, Entry)]) -> Site {
    entries
        .iter()
        .map(|(p, e)| (p.to_string(), e.clone()))
        .collect()
}

fn lookup(site: &Site, path: &str) -> Entry {
    let key = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    site.get(key).cloned().unwrap_or(Entry::Missing)
}

/// What the host does with `decide`'s outcomes for one request: the final
/// decision, and the paths decided, in order.
fn follow(config: &Config, req: &Request, site: &Site) -> (Decision, Vec<String>) {
    let mut req = req.clone();
    let mut paths = vec![req.path.clone()];
    loop {
        let found = lookup(site, &req.path);
        match outcome_with(config, &req, &found) {
            Outcome::Respond(d) => return (d, paths),
            Outcome::Rewrite(Rewrite { path, reason }) => {
                let count = req.hop.as_ref().map_or(0, |h| h.count) + 1;
                assert!(
                    count <= MAX_HOPS,
                    "more than {MAX_HOPS} rewrites: {paths:?}"
                );
                assert!(!paths.contains(&path), "rewrite loop: {paths:?} -> {path}");
                let original_path = paths[0].clone();
                paths.push(path.clone());
                req.path = path;
                req.hop = Some(Hop {
                    original_path,
                    count,
                    reason,
                });
            }
        }
    }
}

fn with(settings: &[(&str, SettingValue)]) -> Config {
    let settings: Vec<_> = settings
        .iter()
        .map(|(n, v)| crate::types::Setting {
            name: n.to_string(),
            value: v.clone(),
        })
        .collect();
    Config::from_settings(&settings, crate::config::DEFAULT_HOST_LIMITS).unwrap()
}

fn text(s: &str) -> SettingValue {
    SettingValue::Text(s.into())
}

fn lines(l: &[&str]) -> SettingValue {
    SettingValue::Items(l.iter().map(|s| s.to_string()).collect())
}

const BROWSER: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

fn html_file(size: u64) -> Entry {
    file(size)
}

fn rewrite_of(o: Outcome) -> Rewrite {
    match o {
        Outcome::Rewrite(r) => r,
        other => panic!("not a rewrite: {other:?}"),
    }
}

fn listed(name: &str, kind: EntryKind, size: u64) -> ListingEntry {
    ListingEntry {
        name: name.into(),
        kind,
        size,
        mtime_ns: MTIME_NS,
    }
}

fn listing_dir(entries: Vec<ListingEntry>, truncated: bool) -> Entry {
    Entry::Directory(DirectoryEntry {
        index: None,
        listing: Some(Listing { entries, truncated }),
    })
}

#[test]
fn redirect_rules_answer_with_their_status_and_location() {
    let config = with(&[(
        "redirects",
        lines(&[
            "/old/*  /new/:splat  301",
            "/tmp    /elsewhere   302",
            "/shadow /gone        301",
            "/forced /there       301!",
        ]),
    )]);
    let s = site(&[("/shadow", file(3)), ("/forced", file(3))]);
    let (d, paths) = follow(&config, &get("/old/a/b").query("x=1").0, &s);
    assert_eq!(
        (d.status, d.header("location")),
        (301, Some("/new/a/b?x=1"))
    );
    assert_eq!(d.header("cache-control"), Some("max-age=3600"));
    assert_eq!(body_text(&d), "Moved Permanently\n");
    assert_eq!(paths, ["/old/a/b"]);
    let (d, _) = follow(&config, &get("/tmp").0, &s);
    assert_eq!((d.status, d.header("location")), (302, Some("/elsewhere")));
    assert_eq!(d.header("cache-control"), None, "a 302 is not cacheable");
    // Netlify's shadowing: an existing file wins over a rule without `!`.
    let (d, _) = follow(&config, &get("/shadow").0, &s);
    assert_eq!(d.status, 200);
    let (d, _) = follow(&config, &get("/forced").0, &s);
    assert_eq!((d.status, d.header("location")), (301, Some("/there")));
    // Hidden paths stay hidden: no rule reaches them.
    let hidden = with(&[("redirects", lines(&["/.env /x 301!"]))]);
    assert_eq!(follow(&hidden, &get("/.env").0, &s).0.status, 404);
}

#[test]
fn a_200_rule_rewrites_and_the_next_call_serves_the_target() {
    let config = with(&[("redirects", lines(&["/app/*  /app/index.html  200"]))]);
    let s = site(&[("/app/index.html", html_file(10))]);
    let first = decide(&config, &get("/app/settings/42").0, &Entry::Missing);
    let r = rewrite_of(first);
    assert_eq!(
        (r.path.as_str(), r.reason.as_str()),
        ("/app/index.html", "redirects line 1")
    );
    let (d, paths) = follow(&config, &get("/app/settings/42").0, &s);
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(paths, ["/app/settings/42", "/app/index.html"]);
    // The target itself, asked for directly: no rewrite to itself (the
    // rule is not forced anyway), served.
    let (d, paths) = follow(&config, &get("/app/index.html").0, &s);
    assert_eq!((d.status, paths.len()), (200, 1));
    // Redirect rules apply on the first call only: a hop whose path matches
    // a rule is served as it is.
    let loops = with(&[("redirects", lines(&["/a /b 200", "/b /a 200"]))]);
    let (d, paths) = follow(&loops, &get("/a").0, &site(&[]));
    assert_eq!(
        (d.status, paths),
        (404, vec!["/a".to_owned(), "/b".to_owned()])
    );
}

#[test]
fn a_404_rule_serves_its_page_with_the_status_kept() {
    let config = with(&[("redirects", lines(&["/shop/*  /closed.html  404"]))]);
    let s = site(&[("/closed.html", html_file(20))]);
    let req = get("/shop/cart")
        .h("if-none-match", "*")
        .h("range", "bytes=0-1");
    let (d, paths) = follow(&config, &req.0, &s);
    // No 304 and no 206 of an error body: the page is not the resource.
    assert_eq!(d.status, 404);
    assert_eq!(d.body, full(Source::Original, None));
    assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!((d.header("etag"), d.header("last-modified")), (None, None));
    assert_eq!(paths, ["/shop/cart", "/closed.html"]);
    // The page missing: the policy's own text, status kept.
    let (d, _) = follow(&config, &get("/shop/cart").0, &site(&[]));
    assert_eq!((d.status, body_text(&d)), (404, "Not Found\n"));
}

#[test]
fn clean_urls() {
    let config = with(&[("clean-urls", SettingValue::Boolean(true))]);
    let s = site(&[
        ("/about.html", html_file(5)),
        ("/docs", dir(Some(("index.html", 5)))),
    ]);
    let (d, paths) = follow(&config, &get("/about").0, &s);
    assert_eq!(
        (d.status, paths),
        (200, vec!["/about".to_owned(), "/about.html".to_owned()])
    );
    assert_eq!(d.header("location"), None);
    let (d, _) = follow(&config, &get("/about.html").query("a=1").0, &s);
    assert_eq!((d.status, d.header("location")), (301, Some("/about?a=1")));
    // A directory with an index wins; its index.html goes to the directory.
    assert_eq!(follow(&config, &get("/docs/").0, &s).0.status, 200);
    let s2 = site(&[("/docs/index.html", html_file(5))]);
    let (d, _) = follow(&config, &get("/docs/index.html").0, &s2);
    assert_eq!((d.status, d.header("location")), (301, Some("/docs/")));
    // Neither exists: one rewrite, then the 404.
    let (d, paths) = follow(&config, &get("/nope").0, &s);
    assert_eq!((d.status, paths.len()), (404, 2));
    // Off by default.
    let (d, paths) = follow(&Config::default(), &get("/about").0, &s);
    assert_eq!((d.status, paths.len()), (404, 1));
}

#[test]
fn fallback_serves_the_app_to_navigations_only() {
    let config = with(&[("fallback", text("/index.html"))]);
    let s = site(&[("/index.html", html_file(100))]);
    let nav = get("/app/settings/42").h("accept", BROWSER);
    let (d, paths) = follow(&config, &nav.0, &s);
    assert_eq!(d.status, 200);
    assert_eq!(paths, ["/app/settings/42", "/index.html"]);
    assert!(d.header("vary").unwrap().contains("Accept"));
    assert_eq!(
        rewrite_of(decide(&config, &nav.0, &Entry::Missing)).reason,
        "fallback"
    );
    // A reload with the validator the first answer gave: 304.
    let etag = d.header("etag").unwrap().to_owned();
    let reload = get("/app/settings/42")
        .h("accept", BROWSER)
        .h("if-none-match", &etag);
    assert_eq!(follow(&config, &reload.0, &s).0.status, 304);
    // Assets and scripts keep their real 404, which varies on Accept too.
    for req in [
        get("/assets/app.js").h("accept", BROWSER),
        get("/app/settings/42").h("accept", "*/*"),
        get("/app/settings/42"),
    ] {
        let (d, paths) = follow(&config, &req.0, &s);
        assert_eq!((d.status, paths.len()), (404, 1), "{:?}", req.0);
        assert_eq!(d.header("vary"), Some("Accept"));
    }
    // Without a fallback, Accept is neither read nor declared.
    assert!(!Config::default()
        .capabilities()
        .request_headers
        .contains(&"accept".to_owned()));
    assert!(config
        .capabilities()
        .request_headers
        .contains(&"accept".to_owned()));
}

#[test]
fn clean_urls_then_fallback_then_error_page_is_the_longest_chain() {
    let config = with(&[
        ("clean-urls", SettingValue::Boolean(true)),
        ("fallback", text("/app.html")),
        ("error-pages", lines(&["404=/404.html"])),
    ]);
    // The app itself is missing: every rule is tried once.
    let s = site(&[("/404.html", html_file(7))]);
    let (d, paths) = follow(&config, &get("/users/42").h("accept", BROWSER).0, &s);
    assert_eq!(
        paths,
        ["/users/42", "/users/42.html", "/app.html", "/404.html"]
    );
    assert_eq!(d.status, 404);
    assert_eq!(d.body, full(Source::Original, None));
    assert!(paths.len() - 1 <= MAX_HOPS as usize);
}

#[test]
fn error_pages_keep_the_status() {
    let config = with(&[("error-pages", lines(&["404=/404.html", "405=/405.html"]))]);
    let s = site(&[("/404.html", html_file(7)), ("/405.html", html_file(8))]);
    let (d, paths) = follow(&config, &get("/nope").0, &s);
    assert_eq!(
        (d.status, paths),
        (404, vec!["/nope".to_owned(), "/404.html".to_owned()])
    );
    assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
    let (d, _) = follow(&config, &method("DELETE", "/x").0, &s);
    assert_eq!((d.status, d.header("allow")), (405, Some(ALLOW)));
    assert_eq!(d.body, full(Source::Original, None));
    // HEAD gets the same decision (the host sends the head only).
    assert_eq!(
        follow(&config, &method("HEAD", "/nope").0, &s).0.status,
        404
    );
    // The page itself missing, or asked for directly while missing: text.
    let (d, paths) = follow(&config, &get("/404.html").0, &site(&[]));
    assert_eq!(
        (d.status, body_text(&d), paths.len()),
        (404, "Not Found\n", 1)
    );
    let (d, paths) = follow(&config, &get("/nope").0, &site(&[]));
    assert_eq!(
        (d.status, body_text(&d), paths.len()),
        (404, "Not Found\n", 2)
    );
    // A hidden path's 404 gets the page too; a hidden page is not served.
    assert_eq!(
        follow(&config, &get("/.git/config").0, &s).0.body,
        full(Source::Original, None)
    );
    let hidden = with(&[("error-pages", lines(&["404=/.errors/404.html"]))]);
    let s = site(&[("/.errors/404.html", html_file(7))]);
    let (d, _) = follow(&hidden, &get("/nope").0, &s);
    assert_eq!((d.status, body_text(&d)), (404, "Not Found\n"));
    // No 412 or 416 page: those answer conditional and range requests.
    let (d, _) = follow(
        &config,
        &get("/a.txt").h("if-match", "\"x\"").0,
        &site(&[("/a.txt", file(5))]),
    );
    assert_eq!((d.status, body_text(&d)), (412, "Precondition Failed\n"));
}

#[test]
fn an_error_page_hop_never_rewrites_again_and_ignores_rules() {
    let config = with(&[
        ("error-pages", lines(&["404=/404.html"])),
        ("fallback", text("/index.html")),
        ("clean-urls", SettingValue::Boolean(true)),
        ("redirects", lines(&["/* /x 301!"])),
    ]);
    let hop = Request {
        hop: Some(Hop {
            original_path: "/nope".into(),
            count: 1,
            reason: "error-page 404".into(),
        }),
        ..get("/404").h("accept", BROWSER).0
    };
    match decide(&config, &hop, &Entry::Missing) {
        Outcome::Respond(d) => assert_eq!(d.status, 404),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_rewrite_on_the_last_hop() {
    let config = with(&[("error-pages", lines(&["404=/404.html"]))]);
    for (count, rewrites) in [(1, true), (MAX_HOPS - 1, true), (MAX_HOPS, false)] {
        let req = Request {
            hop: Some(Hop {
                original_path: "/a".into(),
                count,
                reason: "redirects line 1".into(),
            }),
            ..get("/b").0
        };
        let o = outcome_with(&config, &req, &Entry::Missing);
        assert_eq!(matches!(o, Outcome::Rewrite(_)), rewrites, "hop {count}");
    }
}

#[test]
fn header_rules_follow_the_address_the_client_asked_for() {
    let config = with(&[
        ("fallback", text("/index.html")),
        (
            "headers",
            lines(&[
                "/app/*",
                "  X-Frame-Options: DENY",
                "  Cache-Control: no-store",
                "/index.html",
                "  X-Index: yes",
            ]),
        ),
    ]);
    let s = site(&[("/index.html", html_file(100))]);
    let (d, _) = follow(&config, &get("/app/x").h("accept", BROWSER).0, &s);
    assert_eq!(d.status, 200);
    assert_eq!(d.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        d.header("cache-control"),
        Some("no-store"),
        "replaces no-cache"
    );
    assert_eq!(d.header("x-index"), None);
    let (d, _) = follow(&config, &get("/index.html").0, &s);
    assert_eq!(
        (d.header("x-index"), d.header("x-frame-options")),
        (Some("yes"), None)
    );
    // Every response, 404 and 304 included; a CORS preflight is answered.
    let cors = with(&[(
        "headers",
        lines(&[
            "/api/*",
            "  Access-Control-Allow-Origin: *",
            "  Access-Control-Allow-Methods: GET, OPTIONS",
        ]),
    )]);
    let d = run_with(&cors, method("OPTIONS", "/api/data"), &Entry::Missing);
    assert_eq!(
        (d.status, d.header("access-control-allow-origin")),
        (204, Some("*"))
    );
    let d = run_with(&cors, get("/api/missing"), &Entry::Missing);
    assert_eq!(
        (d.status, d.header("access-control-allow-origin")),
        (404, Some("*"))
    );
}

#[test]
fn listings_are_rendered_escaped_and_bounded() {
    let config = with(&[("autoindex", text("html"))]);
    let entries = vec![
        listed(".env", EntryKind::File, 1),
        listed("<img src=x onerror=alert(1)>", EntryKind::File, 5),
        listed("a\"b", EntryKind::Directory, 0),
        listed("sock", EntryKind::Other, 0),
    ];
    let d = run_with(
        &config,
        get("/files/"),
        &listing_dir(entries.clone(), false),
    );
    assert_eq!(d.status, 200);
    assert_eq!(d.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(d.header("cache-control"), Some("no-cache"));
    assert!(d
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let html = body_text(&d);
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("./a%22b/"));
    assert!(!html.contains(".env"), "dotfiles are hidden");
    // Without the slash: the redirect first, as for an index.
    let d = run_with(
        &config,
        get("/files").query("q"),
        &listing_dir(entries.clone(), false),
    );
    assert_eq!((d.status, d.header("location")), (301, Some("/files/?q")));
    // JSON.
    let json = with(&[("autoindex", text("json"))]);
    let d = run_with(&json, get("/files/"), &listing_dir(entries.clone(), true));
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert!(body_text(&d).ends_with("\"truncated\":true}\n"));
    assert!(body_text(&d).contains("\"name\":\"a\\\"b\""));
    // Off (the default): a directory without an index is a 404 even if a
    // listing came.
    assert_eq!(
        run(get("/files/"), &listing_dir(entries, false)).status,
        404
    );
    // The most entries the policy asks for fit whole rows into max-inline.
    let many: Vec<_> = (0..config.capabilities().listing)
        .map(|i| {
            listed(
                &format!("file-{i:05}-{}", "x".repeat(40)),
                EntryKind::File,
                i.into(),
            )
        })
        .collect();
    let d = run_with(&config, get("/big/"), &listing_dir(many, true));
    let Body::Inline(body) = &d.body else {
        panic!()
    };
    assert!(body.len() <= config.limits.max_inline as usize);
    assert!(body_text(&d).contains("Truncated"));
    assert!(body_text(&d).ends_with("</html>\n"));
}

// ------------------------------------------------------------- properties

/// One of the site configurations the properties run under: each rule on
/// or off, with rules that reach each other's paths.
fn arb_config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["off", "html", "json"]),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![200u32, 600, 65536]),
    )
        .prop_map(|(fb, ep, cu, ai, rd, hd, inline)| {
            let mut s = vec![
                ("autoindex", text(ai)),
                ("clean-urls", SettingValue::Boolean(cu)),
            ];
            if fb {
                s.push(("fallback", text("/index.html")));
            }
            if ep {
                s.push(("error-pages", lines(&["404=/404.html", "405=/about.html"])));
            }
            if rd {
                s.push((
                    "redirects",
                    lines(&[
                        "/old/*   /new/:splat   301",
                        "/app/*   /index.html   200",
                        "/shop/*  /404.html     404",
                        "/q id=:id  /p/:id      302",
                        "/f       /a.txt        200!",
                        "/loop    /loop         200!",
                        "/about   /about.html   200",
                    ]),
                ));
            }
            if hd {
                s.push((
                    "headers",
                    lines(&[
                        "/*",
                        "  X-A: 1",
                        "/app/*",
                        "  Cache-Control: no-store",
                        "  Vary: Origin",
                    ]),
                ));
            }
            let mut config = with(&s);
            config.limits.max_inline = inline;
            config
        })
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/404.html",
    "/a.txt",
    "/about",
    "/about.html",
    "/app/x",
    "/app/",
    "/old/y",
    "/shop/z",
    "/q",
    "/f",
    "/loop",
    "/dir/",
    "/dir",
    "/.env",
    "/new/y",
    "/p/1",
];

fn arb_listing() -> impl Strategy<Value = Listing> {
    let kind = prop::sample::select(vec![
        EntryKind::File,
        EntryKind::Directory,
        EntryKind::Other,
    ]);
    let name = prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,3})?",
        "[^/\u{0}]{1,12}".prop_filter("not . or ..", |n| n != "." && n != ".."),
        Just("<script>x</script>".to_owned()),
        Just(".git".to_owned()),
    ];
    (
        prop::collection::btree_map(name, (kind, 0u64..1 << 40, any::<i64>()), 0..40),
        any::<bool>(),
    )
        .prop_map(|(entries, truncated)| Listing {
            entries: entries
                .into_iter()
                .map(|(name, (kind, size, mtime_ns))| ListingEntry {
                    name,
                    kind,
                    size,
                    mtime_ns,
                })
                .collect(),
            truncated,
        })
}

fn arb_site_entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => arb_entry(),
        1 => arb_listing().prop_map(|l| listing_dir(l.entries, l.truncated)),
    ]
}

fn arb_site() -> impl Strategy<Value = Site> {
    prop::collection::vec(arb_site_entry(), PATHS.len()).prop_map(|entries| {
        PATHS
            .iter()
            .zip(entries)
            .map(|(p, e)| (lookup_key(p), e))
            .collect()
    })
}

fn lookup_key(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path.to_owned()
    }
}

fn arb_request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["GET", "GET", "GET", "HEAD", "OPTIONS", "POST"]),
        prop::sample::select(PATHS),
        prop::option::of(prop::sample::select(vec!["id=7", "id=", "a=1", "id=..%2F"])),
        prop::collection::vec(arb_any_header(), 0..6),
        prop::option::of(prop::sample::select(vec![
            BROWSER,
            "*/*",
            "application/json",
        ])),
    )
        .prop_map(|(m, path, query, headers, accept)| {
            let mut req = method(m, path);
            for (n, v) in &headers {
                req = req.h(n, v);
            }
            if let Some(a) = accept {
                req = req.h("accept", a);
            }
            if let Some(q) = query {
                req = req.query(q);
            }
            req.0
        })
}

/// The request as the host passes it: only the declared fields.
fn declared(config: &Config, req: &Request) -> Request {
    let names = config.capabilities().request_headers;
    Request {
        headers: req
            .headers
            .iter()
            .filter(|h| names.contains(&h.name))
            .cloned()
            .collect(),
        ..req.clone()
    }
}

/// The host's decision cache over a chain (WIT "Reusable decisions"): each
/// call's outcome keyed by exactly that call's inputs, the request as the
/// host passes it (declared fields, hop) and the entry (listing included).
fn follow_cached(
    config: &Config,
    req: &Request,
    site: &Site,
    cache: &mut BTreeMap<String, Outcome>,
) -> Decision {
    let mut req = declared(config, req);
    let mut paths = vec![req.path.clone()];
    loop {
        let found = lookup(site, &req.path);
        let key = format!("{req:?}|{found:?}");
        let outcome = cache
            .entry(key)
            .or_insert_with(|| decide(config, &req, &found))
            .clone();
        match outcome {
            Outcome::Respond(d) => return d,
            Outcome::Rewrite(Rewrite { path, reason }) => {
                let count = req.hop.as_ref().map_or(0, |h| h.count) + 1;
                assert!(count <= MAX_HOPS && !paths.contains(&path));
                paths.push(path.clone());
                req.hop = Some(Hop {
                    original_path: paths[0].clone(),
                    count,
                    reason,
                });
                req.path = path;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Every chain a site's rules make ends within `MAX_HOPS` rewrites,
    /// never rewrites to a path already decided, and keeps the contract at
    /// every call (`follow` and `outcome_with` check it); HEAD answers what
    /// GET would.
    #[test]
    fn chains_end_and_keep_the_contract(
        config in arb_config(),
        site in arb_site(),
        req in arb_request(),
    ) {
        let (d, _) = follow(&config, &req, &site);
        if req.method == "GET" && !req.headers.iter().any(|h| h.name == "range") {
            let head = Request { method: "HEAD".into(), ..req.clone() };
            prop_assert_eq!(follow(&config, &head, &site).0, d);
        }
    }

    /// The decision-cache equivalence with rules, rewrites and listings: a
    /// host that passes only the declared fields and answers each hop from
    /// a cache keyed by that hop's inputs gives, over a stream of requests
    /// to one site, exactly the decisions of calling the policy every time
    /// with every field.
    #[test]
    fn cached_chains_equal_uncached_ones(
        config in arb_config(),
        site in arb_site(),
        reqs in prop::collection::vec(arb_request(), 1..12),
    ) {
        let mut cache = BTreeMap::new();
        for req in &reqs {
            let uncached = follow(&config, req, &site).0;
            prop_assert_eq!(follow_cached(&config, req, &site, &mut cache), uncached, "{:?}", req);
        }
    }
}
