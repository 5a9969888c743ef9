//! `_redirects`: every syntax feature, every refusal with its message, and
//! property tests against a naive reference matcher.

use proptest::prelude::*;

use super::*;
use crate::rules::MAX_LINE;

fn rules(text: &str) -> Redirects {
    Redirects::parse_text(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    Redirects::parse_text(text).expect_err(text)
}

/// The action for a missing path.
fn find(r: &Redirects, path: &str, query: Option<&str>) -> Option<Action> {
    r.find(path, query, false).map(|m| m.action)
}

fn redirect(status: u16, location: &str) -> Option<Action> {
    Some(Action::Redirect {
        status,
        location: location.into(),
    })
}

fn rewrite(status: u16, path: &str) -> Option<Action> {
    Some(Action::Rewrite {
        status,
        path: path.into(),
    })
}

#[test]
fn basic_redirects_default_to_301() {
    let r = rules("/home / \n/blog/my-post.php /blog/my-post\n/news /blog 302");
    assert_eq!(r.len(), 3);
    assert_eq!(find(&r, "/home", None), redirect(301, "/"));
    assert_eq!(
        find(&r, "/blog/my-post.php", None),
        redirect(301, "/blog/my-post")
    );
    assert_eq!(find(&r, "/news", None), redirect(302, "/blog"));
    assert_eq!(find(&r, "/other", None), None);
}

#[test]
fn every_status() {
    for (status, redirects) in [
        (301, true),
        (302, true),
        (303, true),
        (307, true),
        (308, true),
        (200, false),
        (404, false),
    ] {
        let r = rules(&format!("/a /b {status}"));
        let want = if redirects {
            redirect(status, "/b")
        } else {
            rewrite(status, "/b")
        };
        assert_eq!(find(&r, "/a", None), want, "{status}");
    }
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let r = rules(
        "# Redirects\n\n   \t\n/a\t\t/b   302  # temporary\n  /c /d # /e /f 200\n#/g /h\r\n/i /j\r\n",
    );
    assert_eq!(r.len(), 3);
    assert_eq!(find(&r, "/a", None), redirect(302, "/b"));
    assert_eq!(find(&r, "/c", None), redirect(301, "/d"));
    assert_eq!(find(&r, "/g", None), None);
    assert_eq!(find(&r, "/i", None), redirect(301, "/j"));
    assert_eq!(r.find("/i", None, false).unwrap().line, 7);
}

#[test]
fn first_matching_rule_wins() {
    let r = rules(
        "/jobs/customer-ninja-rockstar /careers/support-engineer\n\
         /jobs/* /careers/:splat\n\
         /jobs/x /never",
    );
    assert_eq!(
        find(&r, "/jobs/customer-ninja-rockstar", None),
        redirect(301, "/careers/support-engineer")
    );
    assert_eq!(find(&r, "/jobs/x", None), redirect(301, "/careers/x"));
    // File order holds across index buckets: the wildcard rule comes first.
    let r = rules("/:lang/x /first\n/en/x /second");
    assert_eq!(find(&r, "/en/x", None), redirect(301, "/first"));
    let r = rules("/en/x /first\n/:lang/x /second");
    assert_eq!(find(&r, "/en/x", None), redirect(301, "/first"));
    assert_eq!(find(&r, "/de/x", None), redirect(301, "/second"));
}

#[test]
fn placeholders_are_substituted() {
    let r = rules("/news/:year/:month/:date/:slug  /blog/:year/:month/:date/:slug");
    assert_eq!(
        find(&r, "/news/2004/02/12/my-story", None),
        redirect(301, "/blog/2004/02/12/my-story")
    );
    assert_eq!(find(&r, "/news/2004/02/12", None), None);
    // Inside a segment, in any order, more than once.
    let r = rules("/n/:year/:month/:day  /blog-:year-:month-:day.html?d=:day#:day 302");
    assert_eq!(
        find(&r, "/n/2004/02/12", None),
        redirect(302, "/blog-2004-02-12.html?d=12#12")
    );
    let r = rules("/:a/:b /:b/:a 200");
    assert_eq!(find(&r, "/foo/bar", None), rewrite(200, "/bar/foo"));
}

#[test]
fn splats_take_the_rest() {
    let r = rules("/news/*  /blog/:splat");
    assert_eq!(
        find(&r, "/news/2004/01/10/my-story", None),
        redirect(301, "/blog/2004/01/10/my-story")
    );
    assert_eq!(find(&r, "/news", None), redirect(301, "/blog/"));
    assert_eq!(find(&r, "/news/", None), redirect(301, "/blog/"));
    assert_eq!(find(&r, "/news/dir/", None), redirect(301, "/blog/dir/"));
    assert_eq!(find(&r, "/newsroom", None), None);
    let r = rules("/* /index.html 200");
    assert_eq!(find(&r, "/", None), rewrite(200, "/index.html"));
    assert_eq!(find(&r, "/any/thing", None), rewrite(200, "/index.html"));
    let r = rules("/app/* /app/:splat/index.html 200");
    assert_eq!(find(&r, "/app", None), rewrite(200, "/app/index.html"));
    assert_eq!(
        find(&r, "/app/a/b", None),
        rewrite(200, "/app/a/b/index.html")
    );
    let r = rules("/:lang/* /:splat?lang=:lang 302");
    assert_eq!(find(&r, "/fr/a/b", None), redirect(302, "/a/b?lang=fr"));
}

#[test]
fn matching_ignores_ascii_case_and_trailing_slashes() {
    let r = rules("/About /about-us\n/Team/ /team-page");
    for path in ["/about", "/ABOUT", "/about/"] {
        assert_eq!(find(&r, path, None), redirect(301, "/about-us"), "{path}");
    }
    assert_eq!(find(&r, "/team", None), redirect(301, "/team-page"));
    assert_eq!(find(&r, "/abouts", None), None);
}

#[test]
fn sources_are_matched_decoded() {
    let r = rules("/caf%C3%A9 /coffee\n/my%20page /page\n/a%2Fb /ab");
    assert_eq!(find(&r, "/café", None), redirect(301, "/coffee"));
    assert_eq!(find(&r, "/my page", None), redirect(301, "/page"));
    // The host decodes %2F in a request too: it is a separator by then.
    assert_eq!(find(&r, "/a/b", None), redirect(301, "/ab"));
    let r = rules("/café /coffee");
    assert_eq!(find(&r, "/café", None), redirect(301, "/coffee"));
}

#[test]
fn shadowing_and_force() {
    let r = rules("/app/* /app/index.html 200\n/old /new 301!\n/old /never\n/x /y");
    // Nothing there: every rule may apply.
    assert_eq!(find(&r, "/app/a", None), rewrite(200, "/app/index.html"));
    // Something there: only forced rules.
    assert_eq!(r.find("/app/a", None, true), None);
    let m = r.find("/old", None, true).unwrap();
    assert_eq!((m.line, m.force), (2, true));
    assert_eq!(r.find("/x", None, true), None);
    // A later forced rule applies to an existing path even though an earlier,
    // unforced one matches: that is why `find` takes `exists`.
    let r = rules("/a /unforced\n/a /forced 302!");
    assert_eq!(find(&r, "/a", None), redirect(301, "/unforced"));
    assert_eq!(
        r.find("/a", None, true).map(|m| m.action),
        redirect(302, "/forced")
    );
    let m = rules("/a /b 200!").find("/a", None, false).unwrap();
    assert!(m.force);
}

#[test]
fn the_query_passes_through_unless_the_target_has_one() {
    let r = rules("/a /b\n/c /d?x=1\n/e /f#top\n/g https://example.com/h");
    assert_eq!(
        find(&r, "/a", Some("q=1&r=%20")),
        redirect(301, "/b?q=1&r=%20")
    );
    assert_eq!(find(&r, "/a", Some("")), redirect(301, "/b"));
    assert_eq!(find(&r, "/a", None), redirect(301, "/b"));
    assert_eq!(find(&r, "/c", Some("q=1")), redirect(301, "/d?x=1"));
    assert_eq!(find(&r, "/e", Some("q=1")), redirect(301, "/f?q=1#top"));
    assert_eq!(
        find(&r, "/g", Some("q=1")),
        redirect(301, "https://example.com/h?q=1")
    );
    // What a client should not have sent is cleaned, not passed raw.
    assert_eq!(
        find(&r, "/a", Some("a b#c\"")),
        redirect(301, "/b?a%20b%23c%22")
    );
    // Rewrites keep the request's query by not touching it.
    assert_eq!(
        find(&rules("/a /b 200"), "/a", Some("q=1")),
        rewrite(200, "/b")
    );
}

#[test]
fn query_conditions() {
    let r = rules(
        "/store id=:id /blog/:id 301\n\
         /store tab=all  sort=:s /all?sort=:s 302\n\
         /store /shop",
    );
    assert_eq!(
        find(&r, "/store", Some("id=my-blog-post")),
        redirect(301, "/blog/my-blog-post")
    );
    // The matched query is consumed, not passed through.
    assert_eq!(
        find(&r, "/store", Some("x=1&id=7&y=2")),
        redirect(301, "/blog/7")
    );
    // Values are decoded to match and encoded again to go out.
    assert_eq!(
        find(&r, "/store", Some("id=a%2Fb+c%3F")),
        redirect(301, "/blog/a%2Fb%20c%3F")
    );
    // An empty or missing value does not satisfy a capture.
    assert_eq!(find(&r, "/store", Some("id=")), redirect(301, "/shop?id="));
    assert_eq!(find(&r, "/store", Some("id")), redirect(301, "/shop?id"));
    assert_eq!(
        find(&r, "/store", Some("tab=all&sort=new")),
        redirect(302, "/all?sort=new")
    );
    assert_eq!(
        find(&r, "/store", Some("tab=some&sort=new")),
        redirect(301, "/shop?tab=some&sort=new")
    );
    assert_eq!(find(&r, "/store", None), redirect(301, "/shop"));
    // The first value of a repeated parameter counts; keys are decoded too.
    assert_eq!(
        find(&r, "/store", Some("i%64=1&id=2")),
        redirect(301, "/blog/1")
    );
    // Literal values, decoded in the rule as in the request; a bare key is an
    // empty value.
    let r = rules("/s q=a+b%21 /found\n/s flag= /flagged");
    assert_eq!(find(&r, "/s", Some("q=a%20b!")), redirect(301, "/found"));
    assert_eq!(find(&r, "/s", Some("q=a b")), None);
    assert_eq!(find(&r, "/s", Some("flag")), redirect(301, "/flagged"));
    // Query captures in a rewrite must leave a normalized path.
    let r = rules("/f id=:id /files/:id.html 200\n/f /none 200");
    assert_eq!(find(&r, "/f", Some("id=x")), rewrite(200, "/files/x.html"));
    assert_eq!(
        find(&r, "/f", Some("id=a/b")),
        rewrite(200, "/files/a/b.html")
    );
    let r = rules("/f id=:id /files/:id 200\n/f /none 200");
    assert_eq!(find(&r, "/f", Some("id=..")), rewrite(200, "/none"));
    assert_eq!(find(&r, "/f", Some("id=../../etc")), rewrite(200, "/none"));
    assert_eq!(find(&r, "/f", Some("id=a%00")), rewrite(200, "/none"));
    assert_eq!(find(&r, "/f", Some("id=a%5Cb")), rewrite(200, "/none"));
}

#[test]
fn locations_encode_substituted_values() {
    let r =
        rules("/s/* /t/:splat 302\n/p/:x /t/:x?v=:x#:x 302\n/u/* https://example.com/:splat 302");
    assert_eq!(
        find(&r, "/s/a b?#%/c\r\nd", None),
        redirect(302, "/t/a%20b%3F%23%25/c%0D%0Ad")
    );
    assert_eq!(
        find(&r, "/p/a&b=c d", None),
        redirect(302, "/t/a&b=c%20d?v=a%26b%3Dc%20d#a%26b%3Dc%20d")
    );
    assert_eq!(find(&r, "/s/é", None), redirect(302, "/t/%C3%A9"));
    assert_eq!(
        find(&r, "/u/x y", Some("q")),
        redirect(302, "https://example.com/x%20y?q")
    );
}

#[test]
fn literal_targets_are_kept_as_written() {
    let r = rules(
        "/a /b%20c?d=%2F&e#f\n/é /café\n/x HTTPS://Example.com:8080/Path?Q#F 308\n/y http://[::1]/",
    );
    assert_eq!(find(&r, "/a", None), redirect(301, "/b%20c?d=%2F&e#f"));
    assert_eq!(find(&r, "/é", None), redirect(301, "/caf%C3%A9"));
    assert_eq!(
        find(&r, "/x", None),
        redirect(308, "https://Example.com:8080/Path?Q#F")
    );
    assert_eq!(find(&r, "/y", None), redirect(301, "http://[::1]/"));
    let r = rules("/z https://example.com");
    assert_eq!(
        find(&r, "/z", Some("a=1")),
        redirect(301, "https://example.com?a=1")
    );
}

#[test]
fn rewrite_targets_are_decoded_and_normalized() {
    let r = rules("/a /b%20c.html 200\n/n/* /news/:splat/x 404\n/d /dir/ 200\n/c /a%3Ab 200");
    assert_eq!(find(&r, "/a", None), rewrite(200, "/b c.html"));
    assert_eq!(find(&r, "/n/x/y", None), rewrite(404, "/news/x/y/x"));
    // An empty splat leaves no empty segment.
    assert_eq!(find(&r, "/n", None), rewrite(404, "/news/x"));
    assert_eq!(find(&r, "/d", None), rewrite(200, "/dir/"));
    assert_eq!(find(&r, "/c", None), rewrite(200, "/a:b"));
}

#[test]
fn refusals_name_the_line_and_the_problem() {
    for (text, want) in [
        ("/a", "line 1: missing target"),
        ("/a x=1", "line 1: missing target"),
        ("\n/a 301", "line 2: missing target before the status 301"),
        ("/a x=1 302", "line 1: missing target before the status 302"),
        (
            "/a b",
            "line 1: expected a target starting with /, http:// or https://, got \"b\"",
        ),
        (
            "a /b",
            "line 1: the source \"a\" is not a path starting with /",
        ),
        (
            "https://blog.example.com/* https://example.com/blog/:splat 301!",
            "line 1: domain-level redirects are not supported (the source \"https://blog.example.com/*\" has a scheme and host; rules match paths only)",
        ),
        (
            "/a /b 418",
            "line 1: unsupported status \"418\" (supported: 301, 302, 303, 307, 308 redirect; 200 and 404 rewrite; ! to force)",
        ),
        ("/a /b 301!!", "line 1: unsupported status \"301!!\""),
        ("/a /b 3O1", "line 1: unsupported status \"3O1\""),
        ("/a /b 0301", "line 1: unsupported status \"0301\""),
        (
            "/ /anz 302 Country=au,nz",
            "line 1: the Country= condition is not supported: it needs information the policy does not have (rules match the path and query only)",
        ),
        ("/ /fr 302 Language=fr", "line 1: the Language= condition is not supported"),
        ("/admin/* 200! Role=admin", "line 1: missing target before the status 200!"),
        ("/admin/* /admin/:splat 200! Role=admin", "line 1: the Role= condition is not supported"),
        ("/a /b 302 Cookie=x", "line 1: the Cookie= condition is not supported"),
        ("/a /b 200 Sign=secret", "line 1: the Sign= condition is not supported"),
        ("/a /b Country=us", "line 1: the Country= condition is not supported"),
        ("/a /b 302 Foo=bar", "line 1: the Foo= condition is not supported (rules match the path and query only)"),
        ("/a /b 302 c", "line 1: unexpected \"c\" after the target and status"),
        ("/a /b /c", "line 1: unexpected \"/c\" after the target and status"),
        (
            "/blog/* https://blog.example.com/:splat 200",
            "line 1: a 200 rewrite to a URL (\"https://blog.example.com/:splat\") is proxying, which is not supported: a rewrite target must be a path",
        ),
        ("/a https://example.com/404 404", "line 1: a 404 rewrite to a URL"),
        (
            "/a /b?x=1 200",
            "line 1: a 200 rewrite serves a file, so its target \"/b?x=1\" cannot have a query (?) or fragment (#)",
        ),
        ("/a /b#x 404", "cannot have a query (?) or fragment (#)"),
        (
            "/a /b/../c 200",
            "line 1: the target \"/b/../c\" is not a normalized path (empty, . or .. segment)",
        ),
        ("/a /b//c 200", "is not a normalized path"),
        ("/a /./c 200", "is not a normalized path"),
        ("/a /%2E%2E/c 200", "is not a normalized path"),
        ("/a /b%5Cc 200", "decodes to a path with a control character or backslash"),
        ("/a /b%0Ac 200", "decodes to a path with a control character or backslash"),
        ("/a /%FF 200", "is not UTF-8 once percent-decoded"),
        (
            "/a //evil.example/x",
            "line 1: the target \"//evil.example/x\" starts with //, which would name another host (write https://host/…)",
        ),
        ("/a https:///x", "line 1: the target \"https:///x\" has no valid host"),
        ("/a https://a\"b/", "has no valid host"),
        (
            "/:sub https://:sub.example.com/",
            "line 1: the target \"https://:sub.example.com/\" has a placeholder (or user:password) in its host, which is not supported",
        ),
        ("/a https://user:pass@example.com/", "has a placeholder (or user:password) in its host"),
        (
            "/a /100%",
            "line 1: the target \"/100%\" has a % that does not start a %XX escape (write %25 for %)",
        ),
        ("/a /b?x=%zz", "has a % that does not start a %XX escape"),
        (
            "/a /:b",
            "line 1: the target \"/:b\" uses :b, which the source does not define",
        ),
        (
            "/a /:splat",
            "line 1: the target \"/:splat\" uses :splat but the source has no *",
        ),
        ("/a /x:bc", "uses :bc, which the source does not define"),
        (
            "/*/a /b",
            "line 1: * must be the whole last segment of the path (as in /news/*), in \"/*/a\"",
        ),
        ("/a* /b", "* must be the whole last segment"),
        ("/:a/:a /b", "line 1: placeholder :a appears twice"),
        ("/:a x=:a /b", "line 1: placeholder :a appears twice"),
        ("/:splat /b", "is not a placeholder name"),
        ("/a x=:splat /b", "is not a placeholder name"),
        ("/a x=:1 /b", "is not a placeholder name"),
        (
            "/a =1 /b",
            "line 1: no parameter name (or not UTF-8) in the query condition \"=1\"",
        ),
        (
            "/a x /b",
            "line 1: expected a query condition KEY=VALUE or a target starting with /, http:// or https://, got \"x\"",
        ),
        ("/a x=%FF /b", "is not UTF-8 once decoded"),
        ("/a//b /c", "line 1: the path \"/a//b\" has an empty, . or .. segment"),
        ("/a/../b /c", "has an empty, . or .. segment"),
        ("/%FF /c", "line 1: the source \"/%FF\" is not UTF-8 once percent-decoded"),
        ("/a%5Cb /c", "has a backslash or NUL"),
        ("/a\u{1}b /c", "line 1: control character U+0001 (only tab is allowed)"),
    ] {
        let err = error(text);
        // A full message is checked from its start, a fragment anywhere.
        let ok = if want.starts_with("line ") {
            err.starts_with(want)
        } else {
            err.starts_with("line 1: ") && err.contains(want)
        };
        assert!(ok, "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn bounds_are_enforced_with_their_values() {
    let too_many = "/a /b\n".repeat(MAX_RULES + 1);
    assert_eq!(
        error(&too_many),
        "line 10001: more than 10000 rules (the limit)"
    );
    assert_eq!(rules(&"/a /b\n".repeat(MAX_RULES)).len(), MAX_RULES);
    let conditions: String = (0..=MAX_QUERY_CONDITIONS)
        .map(|i| format!("k{i}=v "))
        .collect();
    assert_eq!(
        error(&format!("/a {conditions}/b")),
        "line 1: more than 8 query conditions (the limit)"
    );
    let placeholders: String = (0..12).map(|i| format!("/:p{i}")).collect();
    let captures: String = (0..5).map(|i| format!("q{i}=:q{i} ")).collect();
    assert_eq!(
        error(&format!("{placeholders} {captures}/b")),
        "line 1: more than 16 placeholders (the limit)"
    );
    let long = format!("/a /{}", "b".repeat(MAX_LINE));
    assert!(error(&long).starts_with("line 1: 8196 bytes long, more than the limit of 8192"));
}

#[test]
fn the_setting_takes_lines_or_text() {
    let lines = SettingValue::Items(vec!["/old/*  /new/:splat  301".into(), "# c".into()]);
    let r = Redirects::parse("redirects", &lines).unwrap();
    assert_eq!(find(&r, "/old/x", None), redirect(301, "/new/x"));
    let text = SettingValue::Text("/a /b\n/c /d 302\n".into());
    assert_eq!(Redirects::parse("redirects", &text).unwrap().len(), 2);
    let err = Redirects::parse(
        "redirects",
        &SettingValue::Items(vec!["/a /b".into(), "/c".into()]),
    )
    .unwrap_err();
    assert_eq!(err, "redirects: line 2: missing target");
    assert!(Redirects::parse("redirects", &SettingValue::Boolean(true)).is_err());
    assert!(Redirects::parse("redirects", &SettingValue::Items(vec![]))
        .unwrap()
        .is_empty());
}

#[test]
fn normalization_of_rewrite_paths() {
    assert_eq!(normalized("/a//b///c/".into()).as_deref(), Some("/a/b/c/"));
    assert_eq!(normalized("/a/b".into()).as_deref(), Some("/a/b"));
    assert_eq!(normalized("/a/../b".into()), None);
    assert_eq!(normalized("/a/./b".into()), None);
    assert_eq!(normalized("/a/..".into()), None);
    assert_eq!(normalized("/a\0".into()), None);
    assert_eq!(normalized("a".into()), None);
    assert_eq!(normalized("/...".into()).as_deref(), Some("/..."));
}

// ---------------------------------------------------------------------------
// Property tests: the indexed matcher against a naive one.

/// Literal segments rules are made of: case variants and a non-ASCII one, so
/// that buckets collide and case-folding is exercised.
const LITERALS: [&str; 5] = ["a", "b", "B", "ab", "é"];
/// Path segments requests are made of: the literals, others that need
/// encoding, and dot-ish ones (legal in a normalized path).
const SEGMENTS: [&str; 10] = ["a", "A", "b", "ab", "É", "é", "x y", "?#%", "...", ".e"];

#[derive(Debug, Clone)]
enum GenSeg {
    Lit(usize),
    Placeholder,
}

/// A rule as data, rendered to `_redirects` text for the engine and matched
/// directly by the reference.
#[derive(Debug, Clone)]
struct GenRule {
    segs: Vec<GenSeg>,
    splat: bool,
    /// `k=:q` (capture) or `k=v` (literal).
    condition: Option<bool>,
    status: u16,
    force: bool,
}

impl GenRule {
    fn names(&self) -> Vec<String> {
        let n = self
            .segs
            .iter()
            .filter(|s| matches!(s, GenSeg::Placeholder))
            .count();
        (0..n).map(|i| ["a", "b", "c", "d"][i].to_owned()).collect()
    }

    fn text(&self) -> String {
        let mut names = self.names().into_iter();
        let mut from: String = self
            .segs
            .iter()
            .map(|s| match s {
                GenSeg::Lit(i) => format!("/{}", LITERALS[*i]),
                GenSeg::Placeholder => format!("/:{}", names.next().unwrap()),
            })
            .collect();
        if self.splat {
            from.push_str("/*");
        }
        if from.is_empty() {
            from.push('/');
        }
        let condition = match self.condition {
            Some(true) => " k=:q",
            Some(false) => " k=v",
            None => "",
        };
        let force = if self.force { "!" } else { "" };
        format!("{from}{condition} {} {}{force}", self.to(), self.status)
    }

    /// `/t`, then every value in its own segment.
    fn to(&self) -> String {
        let mut to = String::from("/t");
        for name in self.names() {
            to.push_str(&format!("/:{name}"));
        }
        if self.condition == Some(true) {
            to.push_str("/:q");
        }
        if self.splat {
            to.push_str("/:splat");
        }
        to
    }
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        prop::collection::vec(
            prop_oneof![
                3 => (0..LITERALS.len()).prop_map(GenSeg::Lit),
                1 => Just(GenSeg::Placeholder),
            ],
            0..4,
        ),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::sample::select(vec![301u16, 302, 200, 404]),
        any::<bool>(),
    )
        .prop_map(|(segs, splat, condition, status, force)| GenRule {
            segs,
            splat,
            condition,
            status,
            force,
        })
}

fn gen_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS.to_vec()), 0..5),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p: String = segs.iter().map(|s| format!("/{s}")).collect();
            if p.is_empty() || slash {
                p.push('/');
            }
            p
        })
}

fn gen_query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "", "k=v", "k=w", "k=", "k", "x=1&k=v", "k=..", "k=.", "k=a%2Fb", "k=z&k=v",
    ]))
    .prop_map(|q| q.map(str::to_owned))
}

/// The reference: every rule in order, matched segment by segment on owned
/// vectors, as the summary in `rules` describes the semantics.
fn reference(
    rules: &[GenRule],
    path: &str,
    query: Option<&str>,
    exists: bool,
) -> Option<(usize, String)> {
    let trailing = path.len() > 1 && path.ends_with('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    'rules: for (i, rule) in rules.iter().enumerate() {
        if exists && !rule.force {
            continue;
        }
        let mut values = Vec::new();
        for (j, seg) in rule.segs.iter().enumerate() {
            let Some(have) = segs.get(j) else {
                continue 'rules;
            };
            match seg {
                GenSeg::Lit(l) if !have.eq_ignore_ascii_case(LITERALS[*l]) => continue 'rules,
                GenSeg::Lit(_) => {}
                GenSeg::Placeholder => values.push(have.to_string()),
            }
        }
        let rest = &segs[rule.segs.len().min(segs.len())..];
        let splat = if rule.splat {
            let mut s = rest.join("/");
            if !s.is_empty() && trailing {
                s.push('/');
            }
            s
        } else if rest.is_empty() {
            String::new()
        } else {
            continue;
        };
        if let Some(capture) = rule.condition {
            let first_k = query.and_then(|q| {
                q.split('&')
                    .map(|p| p.split_once('=').unwrap_or((p, "")))
                    .find(|(k, _)| *k == "k")
                    .map(|(_, v)| v.replace("%2F", "/"))
            });
            match (capture, first_k) {
                (true, Some(v)) if !v.is_empty() => values.push(v),
                (false, Some(v)) if v == "v" => {}
                _ => continue,
            }
        }
        let mut target = String::from("/t");
        for v in &values {
            target.push('/');
            target.push_str(v);
        }
        if rule.splat {
            target.push('/');
            target.push_str(&splat);
        }
        while target.contains("//") {
            target = target.replace("//", "/");
        }
        if target.split('/').any(|s| s == "." || s == "..") {
            continue;
        }
        return Some((i + 1, target));
    }
    None
}

/// What the engine found, as (line, decoded target path).
fn engine(r: &Redirects, path: &str, query: Option<&str>, exists: bool) -> Option<(usize, String)> {
    r.find(path, query, exists).map(|m| {
        let target = match m.action {
            Action::Rewrite { path, .. } => path,
            Action::Redirect { location, .. } => {
                let path = location.split(['?', '#']).next().unwrap_or("");
                percent_encoding::percent_decode_str(path)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            }
        };
        (m.line, target)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_index_agrees_with_a_linear_scan(
        rules in prop::collection::vec(gen_rule(), 0..24),
        paths in prop::collection::vec((gen_path(), gen_query(), any::<bool>()), 1..8),
    ) {
        let text: String = rules.iter().map(|r| r.text() + "\n").collect();
        let compiled = Redirects::parse_text(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        for (path, query, exists) in &paths {
            let want = reference(&rules, path, query.as_deref(), *exists);
            let got = engine(&compiled, path, query.as_deref(), *exists);
            prop_assert_eq!(got, want, "{}\n{} {:?} exists={}", text, path, query, exists);
        }
    }
}

/// A path segment as the host may hand one over: anything but `/`, not `.`
/// or `..` (NUL and backslash included: the Location must be safe whatever).
fn any_segment() -> impl Strategy<Value = String> {
    "[^/]{1,12}".prop_filter("not a dot segment", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn locations_are_always_valid_field_values(
        segs in prop::collection::vec(any_segment(), 1..5),
        slash in any::<bool>(),
        query in prop::option::of(any::<String>()),
    ) {
        let r = rules(
            "/r/* /t/:splat 302\n\
             /p/:x/* /t/:x/:splat?v=:x#:splat 307\n\
             /q/* k=:k /t/:k?k=:k 301\n\
             /u/* https://example.com/:splat 308\n\
             /* /:splat 301",
        );
        let mut rest: String = segs.join("/");
        if slash {
            rest.push('/');
        }
        let k_query = query.as_ref().map(|q| format!("k={q}"));
        for (case, (path, query)) in [
            (format!("/r/{rest}"), query.as_deref()),
            (format!("/p/{rest}"), query.as_deref()),
            (format!("/q/{rest}"), k_query.as_deref()),
            (format!("/u/{rest}"), query.as_deref()),
            (format!("/{rest}"), query.as_deref()),
        ]
        .into_iter()
        .enumerate()
        {
            let Some(m) = r.find(&path, query, false) else { continue };
            let Action::Redirect { location, .. } = m.action else {
                return Err(TestCaseError::fail("not a redirect"));
            };
            prop_assert!(location.bytes().all(|b| b.is_ascii_graphic()), "{:?}", location);
            prop_assert!(
                (location.starts_with('/') && !location.starts_with("//"))
                    || location.starts_with("https://example.com/"),
                "{:?}", location
            );
            prop_assert!(location.matches('#').count() <= 1, "{:?}", location);
            // The path part decodes back to the request's values.
            let path_part = location.split(['?', '#']).next().unwrap();
            let decoded = percent_encoding::percent_decode_str(path_part).decode_utf8_lossy();
            match case {
                0 | 1 | 3 => prop_assert!(decoded.contains(segs.last().unwrap().as_str()), "{:?}", location),
                4 if m.line == 5 => prop_assert_eq!(decoded, format!("/{rest}")),
                _ => {}
            }
        }
    }

    #[test]
    fn parsing_never_panics(text in "([/:*a-z !#=?%0-9.\t]{0,30}\n){0,6}") {
        let _ = Redirects::parse_text(&text);
    }

    #[test]
    fn matching_never_panics(path in "/[^\u{0}]{0,30}", query in prop::option::of(any::<String>())) {
        let r = rules("/* /t/:splat 302\n/:a/:b k=:k /t/:a/:k 200\n/a/* https://x.example/:splat#:splat 301");
        let _ = r.find(&path, query.as_deref(), false);
    }
}
