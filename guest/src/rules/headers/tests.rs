//! `_headers`: syntax, merging, refusals, and the index against a linear scan.

use proptest::prelude::*;

use super::*;
use crate::rules::MAX_LINE;

fn rules(text: &str) -> HeaderRules {
    HeaderRules::parse_text(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    HeaderRules::parse_text(text).expect_err(text)
}

/// The fields for `path` as (name, value) strings.
fn fields(r: &HeaderRules, path: &str) -> Vec<(String, String)> {
    r.for_path(path)
        .into_iter()
        .map(|f| (f.name.to_owned(), f.value.into_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_netlify_example() {
    let r = rules(
        "# a comment\n\
         /*\n  X-Frame-Options: DENY\n  X-XSS-Protection: 1; mode=block\n\n\
         /templates/index.html\n  X-Frame-Options: DENY\n  Basic-Auth: someuser:somepassword\n",
    );
    assert_eq!(r.len(), 2);
    assert_eq!(
        fields(&r, "/templates/index.html"),
        pairs(&[
            ("x-frame-options", "DENY"),
            ("x-xss-protection", "1; mode=block"),
            ("basic-auth", "someuser:somepassword"),
        ])
    );
    assert_eq!(
        fields(&r, "/other"),
        pairs(&[
            ("x-frame-options", "DENY"),
            ("x-xss-protection", "1; mode=block")
        ])
    );
}

#[test]
fn the_setting_takes_lines_or_text() {
    let lines = SettingValue::Items(vec![
        "/api/*".into(),
        "  Access-Control-Allow-Origin: *".into(),
    ]);
    let r = HeaderRules::parse("headers", &lines).unwrap();
    assert_eq!(
        fields(&r, "/api/v1/users"),
        pairs(&[("access-control-allow-origin", "*")])
    );
    assert_eq!(
        fields(&r, "/api"),
        pairs(&[("access-control-allow-origin", "*")])
    );
    assert!(fields(&r, "/apis").is_empty());
    let text = SettingValue::Text("/a\r\n\tX-A: 1\r\n".into());
    assert_eq!(HeaderRules::parse("headers", &text).unwrap().len(), 1);
    let err =
        HeaderRules::parse("headers", &SettingValue::Items(vec!["X-A: 1".into()])).unwrap_err();
    assert_eq!(
        err,
        "headers: line 1: \"X-A: 1\" comes before any path line (a line starting with /)"
    );
}

#[test]
fn patterns() {
    let r = rules(
        "/assets/*\n  A: 1\n/*.js\n  B: 1\n/:lang/about\n  C: 1\n/Docs/\n  D: 1\n/\n  E: 1\n/caf%C3%A9\n  F: 1",
    );
    let names = |path: &str| -> String { r.for_path(path).iter().map(|f| f.name).collect() };
    assert_eq!(names("/assets/app.js"), "ab");
    assert_eq!(names("/assets"), "a");
    assert_eq!(names("/ASSETS/x.JS"), "ab");
    assert_eq!(names("/x/y.js"), "b");
    assert_eq!(names("/en/about"), "c");
    assert_eq!(names("/en/about/"), "c");
    assert_eq!(names("/en/fr/about"), "");
    assert_eq!(names("/docs"), "d");
    assert_eq!(names("/"), "e");
    assert_eq!(names("/café"), "f");
    assert_eq!(names("/nothing"), "");
    assert_eq!(r.matching_lines("/assets/app.js"), vec![1, 3]);
}

#[test]
fn every_matching_rule_applies_and_values_join() {
    let r = rules(
        "/*\n  Cache-Control: no-cache\n  Vary: Accept\n\
         /assets/*\n  Cache-Control: max-age=60\n  Vary: Accept\n  vary: Origin\n\
         /assets/*.css\n  cache-control: no-cache\n  Link: </a.css>; rel=preload\n  Link: </b.css>; rel=preload\n",
    );
    assert_eq!(
        fields(&r, "/assets/x.css"),
        pairs(&[
            ("cache-control", "no-cache, max-age=60"),
            ("vary", "Accept, Origin"),
            ("link", "</a.css>; rel=preload, </b.css>; rel=preload"),
        ])
    );
    assert_eq!(
        fields(&r, "/x"),
        pairs(&[("cache-control", "no-cache"), ("vary", "Accept")])
    );
    // Fields borrow from the rules unless they had to be joined.
    let got = r.for_path("/x");
    assert!(got.iter().all(|f| matches!(f.value, Cow::Borrowed(_))));
}

#[test]
fn set_cookie_is_never_joined() {
    let r = rules("/*\n  Set-Cookie: a=1\n  Set-Cookie: b=2\n/x\n  Set-Cookie: a=1\n");
    assert_eq!(
        fields(&r, "/x"),
        pairs(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("set-cookie", "a=1")
        ])
    );
}

#[test]
fn values_already_listed_are_not_repeated() {
    assert!(in_list("a, b, c", "b"));
    assert!(in_list("a, b, c", "a, b"));
    assert!(in_list("a", "a"));
    assert!(!in_list("ab, c", "b"));
    assert!(!in_list("a, bc", "b"));
    assert!(!in_list("a, b", "a, b, c"));
    let r = rules("/*\n  X-A: 1, 2\n/x\n  X-A: 2\n  X-A: 3\n");
    assert_eq!(fields(&r, "/x"), pairs(&[("x-a", "1, 2, 3")]));
}

#[test]
fn whitespace_comments_and_empty_blocks() {
    let r = rules("\n# c\n  /a  \n\t# fields below\n\tX-A :  1  \n/empty\n# nothing\n/b\nX-B:2\n");
    assert_eq!(r.len(), 2, "a path with no fields is dropped");
    assert_eq!(fields(&r, "/a"), pairs(&[("x-a", "1")]));
    assert_eq!(fields(&r, "/b"), pairs(&[("x-b", "2")]));
    assert!(fields(&r, "/empty").is_empty());
    assert_eq!(r.matching_lines("/b"), vec![8]);
    // A value may hold colons.
    let r = rules("/a\n  Link: <https://x.example/a>; rel=preconnect\n");
    assert_eq!(
        fields(&r, "/a"),
        pairs(&[("link", "<https://x.example/a>; rel=preconnect")])
    );
}

#[test]
fn refusals_name_the_line_and_the_problem() {
    for (text, want) in [
        ("X-A: 1", "line 1: \"X-A: 1\" comes before any path line (a line starting with /)"),
        ("/a\n  nonsense", "line 2: expected `Name: value`, or a path starting with /, got \"nonsense\""),
        ("/a\n  X A: 1", "line 2: \"X A\" is not a valid header name"),
        ("/a\n  : 1", "line 2: \"\" is not a valid header name"),
        ("/a\n  X(A): 1", "line 2: \"X(A)\" is not a valid header name"),
        ("/a\n  X-A:", "line 2: no value for x-a"),
        ("/a\n  X-A:   \t", "line 2: no value for x-a"),
        (
            "/a\n  X-A: é",
            "line 2: the value of x-a has U+00E9: header values must be visible ASCII, spaces and tabs",
        ),
        ("/a\n  X-A: a\u{7f}", "line 2: control character U+007F (only tab is allowed)"),
        ("/a\n  X-A: a\rb", "line 2: control character U+000D (only tab is allowed)"),
        ("/a\n  X-A: a\0", "line 2: control character U+0000 (only tab is allowed)"),
        ("/a b\n  X-A: 1", "line 1: a path line holds one path, without spaces (write %20), got \"/a b\""),
        ("/a//b\n  X-A: 1", "line 1: the path \"/a//b\" has an empty, . or .. segment"),
        ("/%FF\n  X-A: 1", "line 1: the path \"/%FF\" is not UTF-8 once percent-decoded"),
        ("/*/a\n  X-A: 1", "line 1: * may appear once, in the last segment of the path"),
        ("/a/**\n  X-A: 1", "line 1: * may appear once, in the last segment of the path"),
        ("/:a/:a\n  X-A: 1", "line 1: placeholder :a appears twice"),
        ("/:\n  X-A: 1", "line 1: \":\" is not a placeholder name"),
    ] {
        let err = error(text);
        assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
    }
    for name in HOST_OWNED {
        let upper = name.to_ascii_uppercase();
        let err = error(&format!("/a\n  {upper}: 1"));
        assert_eq!(
            err,
            format!("line 2: {name} is set by the host (message framing or the connection); a rule may not set it")
        );
    }
}

#[test]
fn bounds_are_enforced_with_their_values() {
    let too_many = "/a\n  X-A: 1\n".repeat(MAX_RULES + 1);
    assert_eq!(
        error(&too_many),
        "line 20001: more than 10000 rules (the limit)"
    );
    assert_eq!(rules(&"/a\n  X-A: 1\n".repeat(MAX_RULES)).len(), MAX_RULES);
    let fields: String = (0..=MAX_FIELDS_PER_RULE)
        .map(|i| format!("  X-{i}: 1\n"))
        .collect();
    assert_eq!(
        error(&format!("/a\n{fields}")),
        "line 66: more than 64 header lines in one rule (the limit)"
    );
    let fields: String = (0..MAX_FIELDS_PER_RULE)
        .map(|i| format!("  X-A: {i}\n"))
        .collect();
    assert_eq!(rules(&format!("/a\n{fields}")).len(), 1);
    let long = format!("/a\n  X-A: {}", "v".repeat(MAX_LINE));
    assert!(error(&long).starts_with("line 2: 8199 bytes long, more than the limit of 8192"));
}

// ---------------------------------------------------------------------------
// Property test: the indexed matcher against a naive linear one.

const LITERALS: [&str; 4] = ["a", "b", "B", "é"];
const SEGMENTS: [&str; 8] = ["a", "A", "b", "é", "É", "x.js", "a.JS", "c"];

#[derive(Debug, Clone)]
enum GenSeg {
    Lit(usize),
    Placeholder,
}

#[derive(Debug, Clone)]
struct GenRule {
    segs: Vec<GenSeg>,
    /// None, `*`, `*.js` or `a*`.
    star: Option<&'static str>,
}

impl GenRule {
    fn text(&self, n: usize) -> String {
        let mut p: String = self
            .segs
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                GenSeg::Lit(l) => format!("/{}", LITERALS[*l]),
                GenSeg::Placeholder => format!("/:p{i}"),
            })
            .collect();
        if let Some(star) = self.star {
            p.push('/');
            p.push_str(star);
        }
        if p.is_empty() {
            p.push('/');
        }
        format!("{p}\n  X-R{n}: {n}\n")
    }

    /// Naive match: segments one by one, the star part against the joined
    /// rest.
    fn matches(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segs.len() < self.segs.len() {
            return false;
        }
        for (seg, have) in self.segs.iter().zip(&segs) {
            if let GenSeg::Lit(l) = seg {
                if !have.eq_ignore_ascii_case(LITERALS[*l]) {
                    return false;
                }
            }
        }
        let rest = segs[self.segs.len()..].join("/").to_ascii_lowercase();
        match self.star {
            None => rest.is_empty(),
            Some("*") => true,
            Some("*.js") => rest.len() >= 3 && rest.ends_with(".js"),
            Some(_) => rest.starts_with('a'),
        }
    }
}

fn gen_rule() -> impl Strategy<Value = GenRule> {
    (
        prop::collection::vec(
            prop_oneof![3 => (0..LITERALS.len()).prop_map(GenSeg::Lit), 1 => Just(GenSeg::Placeholder)],
            0..3,
        ),
        prop::option::of(prop::sample::select(vec!["*", "*.js", "a*"])),
    )
        .prop_map(|(segs, star)| GenRule { segs, star })
}

fn gen_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS.to_vec()), 0..4),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_index_agrees_with_a_linear_scan(
        gen in prop::collection::vec(gen_rule(), 0..24),
        paths in prop::collection::vec(gen_path(), 1..8),
    ) {
        let text: String = gen.iter().enumerate().map(|(n, r)| r.text(n)).collect();
        let compiled = HeaderRules::parse_text(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        for path in &paths {
            // Each rule is two lines: rule n is on line 2n + 1.
            let want: Vec<usize> = gen
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matches(path))
                .map(|(n, _)| 2 * n + 1)
                .collect();
            prop_assert_eq!(compiled.matching_lines(path), want.clone(), "{}\n{}", text, path);
            let names: Vec<String> = compiled.for_path(path).iter().map(|f| f.name.to_owned()).collect();
            let want_names: Vec<String> = want.iter().map(|l| format!("x-r{}", (l - 1) / 2)).collect();
            prop_assert_eq!(names, want_names);
        }
    }

    #[test]
    fn parsing_never_panics(text in "([/:*a-zA-Z !#.%0-9\t-]{0,20}\n){0,6}") {
        let _ = HeaderRules::parse_text(&text);
    }

    #[test]
    fn fields_are_always_valid(name in "[!-~]{1,10}", value in "[ -~\t]{1,20}") {
        if let Ok(r) = HeaderRules::parse_text(&format!("/*\n{name}: {value}")) {
            for f in r.for_path("/x") {
                prop_assert!(is_token(f.name));
                prop_assert!(!f.value.is_empty());
                prop_assert!(f.value.bytes().all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic()));
                prop_assert!(!HOST_OWNED.contains(&f.name));
            }
        }
    }
}
