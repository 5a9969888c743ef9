//! `clean-urls`: pages without `.html` in their address, like Netlify's
//! "pretty URLs".
//!
//! With `clean-urls = true`:
//!
//! * **`/about` serves `about.html`.** When nothing exists at a path, the
//!   policy asks the host for `candidate(path)` (`/about.html`) and serves it
//!   with 200 if it is a file. Only for a path whose last segment does not
//!   end in `.html` already and with no trailing `/` (`/about/` names a
//!   directory; a directory `about/` with an index wins over `about.html`
//!   because it exists and the candidate is only tried for what does not).
//! * **`/about.html` redirects (301) to `/about`,** keeping the query, when
//!   `about.html` exists (`redirect`), so each page has one address.
//!   `index.html` (any of the `index-names`) redirects to its directory:
//!   `/docs/index.html` → `/docs/`, `/index.html` → `/`, which the directory
//!   serves with that same index; that is Netlify's treatment of index pages.
//!   The two rules cannot loop: the redirect's target is either the
//!   directory (served by its index) or a path without `.html` (served by
//!   the candidate).
//!
//! Not covered (the operator should not do it): a file `about` (no extension)
//! *and* `about.html` — `/about` serves the former and `/about.html`
//! redirects to it; and a directory `about/` *without* an index next to
//! `about.html` — `/about` is the directory.

use super::encode::{self, PATH};
use crate::config;
use crate::types::SettingValue;

/// Parses `clean-urls` (a boolean; off by default).
pub fn parse(name: &str, value: &SettingValue) -> Result<bool, String> {
    config::boolean(name, value)
}

/// The file to try for a request path that found nothing: `path` + `.html`,
/// or `None` when clean URLs do not apply to it.
pub fn candidate(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    if last.is_empty() || last.ends_with(".html") {
        return None;
    }
    Some(format!("{path}.html"))
}

/// The `Location` for a request that found the file `path` ending in
/// `.html`: the clean address, percent-encoded, with `?` and the raw query
/// if the request had a non-empty one. `None` when no redirect applies (not
/// `.html`, no stem, a trailing `/`, or a stem that ends in `.html` itself,
/// whose clean address would not lead back to it).
pub fn redirect(path: &str, raw_query: Option<&str>, index_names: &[String]) -> Option<String> {
    let (dir, last) = path.rsplit_once('/')?;
    let stem = last.strip_suffix(".html")?;
    if stem.is_empty() || stem.ends_with(".html") {
        return None;
    }
    let mut location = String::with_capacity(path.len() + 1);
    location.push('/');
    encode::push(&mut location, dir.trim_start_matches('/'), PATH);
    if !location.ends_with('/') {
        location.push('/');
    }
    if !index_names.iter().any(|n| n == last) {
        encode::push(&mut location, stem, PATH);
    }
    encode::push_query(&mut location, raw_query);
    Some(location)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index() -> Vec<String> {
        vec!["index.html".to_owned()]
    }

    #[test]
    fn candidates() {
        assert_eq!(candidate("/about").as_deref(), Some("/about.html"));
        assert_eq!(
            candidate("/docs/intro").as_deref(),
            Some("/docs/intro.html")
        );
        assert_eq!(candidate("/v1.2").as_deref(), Some("/v1.2.html"));
        assert_eq!(candidate("/a b").as_deref(), Some("/a b.html"));
        for none in ["/", "/about/", "/about.html", "/a/index.html", ""] {
            assert_eq!(candidate(none), None, "{none}");
        }
    }

    #[test]
    fn redirects() {
        let idx = index();
        let r = |path: &str, q: Option<&str>| redirect(path, q, &idx);
        assert_eq!(r("/about.html", None).as_deref(), Some("/about"));
        assert_eq!(
            r("/docs/intro.html", Some("a=1")).as_deref(),
            Some("/docs/intro?a=1")
        );
        assert_eq!(
            r("/docs/intro.html", Some("")).as_deref(),
            Some("/docs/intro")
        );
        assert_eq!(r("/index.html", None).as_deref(), Some("/"));
        assert_eq!(
            r("/docs/index.html", Some("x")).as_deref(),
            Some("/docs/?x")
        );
        assert_eq!(r("/a b/c?#.html", None).as_deref(), Some("/a%20b/c%3F%23"));
        assert_eq!(
            r("/é.html", Some("q=é")).as_deref(),
            Some("/%C3%A9?q=%C3%A9")
        );
        for none in [
            "/about",
            "/about.htm",
            "/.html",
            "/x/.html",
            "/a.html/",
            "/a.html.html",
            "/",
        ] {
            assert_eq!(r(none, None), None, "{none}");
        }
        // Only the configured index names go to their directory.
        let htm = vec!["index.htm".to_owned()];
        assert_eq!(
            redirect("/docs/index.html", None, &htm).as_deref(),
            Some("/docs/index")
        );
    }

    #[test]
    fn redirects_and_candidates_do_not_loop() {
        // /about.html → /about → candidate /about.html (served): no second hop.
        let location = redirect("/about.html", None, &index()).unwrap();
        assert_eq!(candidate(&location).as_deref(), Some("/about.html"));
        assert_eq!(redirect(&location, None, &index()), None);
    }

    #[test]
    fn the_setting() {
        assert_eq!(parse("clean-urls", &SettingValue::Boolean(true)), Ok(true));
        assert_eq!(
            parse("clean-urls", &SettingValue::Text("off".into())),
            Ok(false)
        );
        assert!(parse("clean-urls", &SettingValue::Integer(1)).is_err());
    }

    proptest! {
        #[test]
        fn locations_are_safe(segs in prop::collection::vec("[^/]{1,8}", 1..4), q in prop::option::of(any::<String>())) {
            let path = format!("/{}.html", segs.join("/"));
            if let Some(loc) = redirect(&path, q.as_deref(), &index()) {
                prop_assert!(loc.bytes().all(|b| b.is_ascii_graphic()), "{:?}", loc);
                prop_assert!(loc.starts_with('/') && !loc.starts_with("//"));
                prop_assert!(!loc.contains('#'));
            }
        }
    }
}
