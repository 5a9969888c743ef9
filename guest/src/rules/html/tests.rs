//! The HTML listing: exact output for a small directory, and for arbitrary
//! names a checker of the page's structure, escaping and links.

use proptest::prelude::*;

use super::*;

const MTIME: i64 = 1_700_000_000_000_000_000;

fn entry(name: &str, kind: Kind, size: u64) -> ListingEntry {
    ListingEntry {
        name: name.into(),
        kind,
        size,
        mtime_ns: MTIME,
    }
}

fn page(dir: &str, entries: &[ListingEntry], truncated: bool, limit: usize) -> String {
    String::from_utf8(render_html(dir, entries, truncated, limit)).unwrap()
}

#[test]
fn a_small_directory() {
    let entries = [
        entry("docs", Kind::Dir, 4096),
        entry("a b?#%.txt", Kind::File, 1536),
        entry("<script>alert('x')</script>", Kind::File, 3),
        entry("line\nbreak", Kind::File, 0),
        entry("fifo", Kind::Other, 0),
        entry("javascript:alert(1)", Kind::File, 1),
    ];
    let html = page("/files/", &entries, false, 65536);
    let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<tr><td>")).collect();
    assert_eq!(
        rows,
        [
            "<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>",
            "<tr><td><a href=\"./docs/\">docs/</a></td><td>-</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
            "<tr><td><a href=\"./a%20b%3F%23%25.txt\">a b?#%.txt</a></td><td data-bytes=\"1536\">1.5 KiB</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
            "<tr><td><a href=\"./%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</a></td><td data-bytes=\"3\">3 B</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
            "<tr><td><a href=\"./line%0Abreak\">line\u{fffd}break</a></td><td data-bytes=\"0\">0 B</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
            "<tr><td>fifo</td><td>-</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
            "<tr><td><a href=\"./javascript%3Aalert%281%29\">javascript:alert(1)</a></td><td data-bytes=\"1\">1 B</td><td><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14T22:13:20Z</time></td></tr>",
        ]
    );
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n"));
    assert!(html.contains("<title>Index of /files/</title>"));
    assert!(html.contains("<h1>Index of /files/</h1>"));
    assert!(html.ends_with("</tbody>\n</table>\n</body>\n</html>\n"));
    assert!(!html.contains("Truncated"));
    check(&html, "/files/", &entries, false).unwrap();
}

#[test]
fn the_root_has_no_parent_link_and_paths_are_escaped() {
    let html = page("/", &[], false, 65536);
    assert!(!html.contains("../"));
    let html = page("/<b>&\"/", &[], false, 65536);
    assert!(html.contains("<title>Index of /&lt;b&gt;&amp;&quot;/</title>"));
    assert!(html.contains("href=\"../\""));
}

#[test]
fn truncation_is_visible() {
    let entries: Vec<_> = (0..100)
        .map(|i| entry(&format!("file-{i:03}.txt"), Kind::File, i))
        .collect();
    let whole = page("/d/", &entries, false, 65536);
    assert!(!whole.contains("Truncated"));
    let limit = whole.len() / 2;
    let half = page("/d/", &entries, false, limit);
    assert!(half.len() <= limit);
    assert!(half.contains("<p><strong>Truncated:</strong>"));
    assert!(half.ends_with("</html>\n"));
    let shown = check(&half, "/d/", &entries, true).unwrap();
    assert!(shown > 30 && shown < 50, "{shown}");
    // Exactly the whole page's length fits it whole.
    assert_eq!(page("/d/", &entries, false, whole.len()), whole);
    // The host's own truncation shows even when everything fits.
    let cut = page("/d/", &entries, true, 1 << 20);
    assert_eq!(check(&cut, "/d/", &entries, true), Ok(100));
    // Too small for even the page's frame: nothing.
    assert_eq!(render_html("/d/", &entries, false, 100), Vec::<u8>::new());
}

/// Checks `html` as the listing of a prefix of `entries`: well-formed
/// (balanced known tags, quoted attributes, only the references `escape`
/// writes, no raw special or control characters in text), the first cell of
/// each body row matching its entry (link text, `href` decoding to the name),
/// the note present iff `truncated`. Returns how many entries are shown.
fn check(
    html: &str,
    dir: &str,
    entries: &[ListingEntry],
    truncated: bool,
) -> Result<usize, String> {
    const TAGS: [&str; 16] = [
        "html", "head", "title", "style", "body", "h1", "table", "thead", "tbody", "tr", "th",
        "td", "a", "time", "p", "strong",
    ];
    let mut stack: Vec<String> = Vec::new();
    // First cells of the body's rows: (text, href).
    let mut rows: Vec<(String, Option<String>)> = Vec::new();
    let mut cell = 0;
    let mut rest = html.strip_prefix("<!DOCTYPE html>").ok_or("no doctype")?;
    while !rest.is_empty() {
        if let Some(tag) = rest.strip_prefix('<') {
            let end = tag.find('>').ok_or("unclosed tag")?;
            let inner = &tag[..end];
            rest = &tag[end + 1..];
            if let Some(name) = inner.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name {
                    return Err(format!("</{name}> closes <{open}>"));
                }
                continue;
            }
            let (name, mut attrs_text) = inner.split_once(' ').unwrap_or((inner, ""));
            let mut attrs = Vec::new();
            while !attrs_text.is_empty() {
                let (key, after) = attrs_text
                    .split_once('=')
                    .ok_or("attribute without value")?;
                let after = after
                    .strip_prefix('"')
                    .ok_or(format!("unquoted attribute in <{inner}>"))?;
                let close = after.find('"').ok_or("unterminated attribute")?;
                let value = &after[..close];
                if value.contains(['<', '>', '\'']) || value.chars().any(char::is_control) {
                    return Err(format!("raw special character in attribute {value:?}"));
                }
                attrs.push((key.to_owned(), unescape(value)?));
                attrs_text = after[close + 1..].trim_start();
            }
            if name == "meta" {
                continue;
            }
            if !TAGS.contains(&name) {
                return Err(format!("unknown tag <{name}>"));
            }
            let in_body = stack.iter().any(|t| t == "tbody");
            match name {
                "tr" if in_body => {
                    rows.push((String::new(), None));
                    cell = 0;
                }
                "td" => cell += 1,
                "a" if in_body && cell == 1 => {
                    let href = attrs.into_iter().find(|(k, _)| k == "href").map(|(_, v)| v);
                    rows.last_mut().ok_or("a outside a row")?.1 =
                        Some(href.ok_or("a without href")?);
                }
                _ => {}
            }
            stack.push(name.to_owned());
            continue;
        }
        let end = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..end];
        rest = &rest[end..];
        if text.contains(['>', '"', '\'']) || text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(format!("raw special character in text {text:?}"));
        }
        let text = unescape(text)?;
        let in_body = stack.iter().any(|t| t == "tbody");
        if in_body && cell == 1 && matches!(stack.last().map(String::as_str), Some("td" | "a")) {
            rows.last_mut()
                .ok_or("text outside a row")?
                .0
                .push_str(&text);
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    let mut rows = rows.into_iter();
    if dir != "/" {
        let up = rows.next().ok_or("no parent link")?;
        if up != ("../".to_owned(), Some("../".to_owned())) {
            return Err(format!("bad parent link {up:?}"));
        }
    }
    let mut shown = 0;
    for (e, (text, href)) in entries.iter().zip(rows.by_ref()) {
        let shown_name: String = e
            .name
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        let slash = if e.kind == Kind::Dir { "/" } else { "" };
        if text != format!("{shown_name}{slash}") {
            return Err(format!("row text {text:?} for {:?}", e.name));
        }
        match (e.kind, href) {
            (Kind::Other, None) => {}
            (Kind::Other, Some(href)) => return Err(format!("link {href:?} to a special file")),
            (_, None) => return Err(format!("no link for {:?}", e.name)),
            (_, Some(href)) => {
                let target = href.strip_prefix("./").ok_or(format!("href {href:?}"))?;
                if !target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%/".contains(&b))
                {
                    return Err(format!("href {href:?} is not fully encoded"));
                }
                let decoded = percent_encoding::percent_decode_str(target)
                    .decode_utf8()
                    .map_err(|e| e.to_string())?;
                if decoded != format!("{}{slash}", e.name) {
                    return Err(format!("href {href:?} for {:?}", e.name));
                }
            }
        }
        shown += 1;
    }
    if rows.next().is_some() {
        return Err("more rows than entries".into());
    }
    let note = html.contains("<p><strong>Truncated:</strong>");
    if note != truncated {
        return Err(format!("truncation note {note}, expected {truncated}"));
    }
    Ok(shown)
}

/// Resolves the references `escape` writes; any other `&` is an error.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let (with, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&#39;", '\''),
        ]
        .into_iter()
        .find(|(r, _)| after.starts_with(r))
        .ok_or(format!("bare & in {s:?}"))?;
        out.push(c);
        rest = &after[with.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn arb_entry() -> impl Strategy<Value = ListingEntry> {
    (
        prop_oneof!["[^/\u{0}]{1,20}", "[<>&\"' a-z?#%\n\t\u{7f}\u{85}é]{1,12}",],
        prop::sample::select(vec![Kind::File, Kind::Dir, Kind::Other]),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(|(name, kind, size, mtime_ns)| ListingEntry {
            name,
            kind,
            size,
            mtime_ns,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn pages_are_well_formed_and_within_the_limit(
        dir in prop_oneof![Just("/".to_owned()), "/[^/\u{0}]{1,10}/"],
        entries in prop::collection::vec(arb_entry(), 0..40),
        truncated in any::<bool>(),
        limit in prop_oneof![0usize..600, 600usize..6000, Just(65536usize)],
    ) {
        let out = render_html(&dir, &entries, truncated, limit);
        prop_assert!(out.len() <= limit);
        if out.is_empty() {
            // Only when not even an empty, truncated page fits.
            prop_assert!(render_html(&dir, &[], true, limit).is_empty());
            return Ok(());
        }
        let html = String::from_utf8(out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let whole = render_html(&dir, &entries, false, usize::MAX);
        let expect_note = truncated || whole.len() > limit;
        let shown = check(&html, &dir, &entries, expect_note).map_err(TestCaseError::fail)?;
        if !expect_note {
            prop_assert_eq!(shown, entries.len());
        }
    }
}
