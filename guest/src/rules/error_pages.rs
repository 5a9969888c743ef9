//! `error-pages`: a file served as the body of an error, e.g.
//! `["404=/404.html", "500=/500.html"]`.
//!
//! Each item is `STATUS=PATH`: a status from 400 to 599 and the path of a
//! file as on disk (not URL-encoded), absolute and normalized, the same way
//! the host hands over request paths. The policy asks the host to resolve
//! the path and serves it with the error's status (keeping the status is the
//! point: a 200 "not found" page misleads crawlers and caches). If the page
//! itself is missing, the policy's own short text body is sent.
//!
//! One page per status: naming a status twice is an error, not a silent
//! override, since two lines for 404 in one list is a mistake.

use super::file_path;
use crate::config;
use crate::types::SettingValue;

/// Error pages by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// Sorted by status.
    pages: Vec<(u16, Box<str>)>,
}

impl ErrorPages {
    /// Parses `error-pages`: an array of `STATUS=PATH` items, or one string
    /// of them separated by commas.
    pub fn parse(name: &str, value: &SettingValue) -> Result<ErrorPages, String> {
        let mut pages: Vec<(u16, Box<str>)> = Vec::new();
        for item in config::list(name, value)? {
            let bad = || {
                format!("{name}: expected STATUS=/path with a status from 400 to 599, got {item:?}")
            };
            let (status, path) = item.split_once('=').ok_or_else(bad)?;
            let status = status.trim();
            let path = path.trim();
            let status = status
                .parse::<u16>()
                .ok()
                .filter(|s| (400..=599).contains(s) && status.len() == 3)
                .ok_or_else(bad)?;
            file_path(path).map_err(|e| format!("{name}: {status}: {e}"))?;
            match pages.binary_search_by_key(&status, |(s, _)| *s) {
                Ok(_) => return Err(format!("{name}: status {status} is given twice")),
                Err(at) => pages.insert(at, (status, path.into())),
            }
        }
        Ok(ErrorPages { pages })
    }

    /// The page for `status`, if one is configured.
    pub fn get(&self, status: u16) -> Option<&str> {
        self.pages
            .binary_search_by_key(&status, |(s, _)| *s)
            .ok()
            .map(|i| &*self.pages[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SettingValue::{Integer, Items, Text};

    fn parse(value: SettingValue) -> Result<ErrorPages, String> {
        ErrorPages::parse("error-pages", &value)
    }

    fn items(list: &[&str]) -> SettingValue {
        Items(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn pages_by_status() {
        let pages = parse(items(&[
            "404=/404.html",
            "500 = /errors/500.html",
            "410=/gone.html",
        ]))
        .unwrap();
        assert_eq!(pages.get(404), Some("/404.html"));
        assert_eq!(pages.get(500), Some("/errors/500.html"));
        assert_eq!(pages.get(410), Some("/gone.html"));
        assert_eq!(pages.get(403), None);
        assert_eq!(pages.get(200), None);
        let text = parse(Text("404=/404.html, 503=/busy.html".into())).unwrap();
        assert_eq!(text.get(503), Some("/busy.html"));
        assert_eq!(parse(items(&[])).unwrap(), ErrorPages::default());
        assert_eq!(parse(Text(String::new())).unwrap(), ErrorPages::default());
    }

    #[test]
    fn refusals() {
        for (value, want) in [
            (items(&["404"]), "error-pages: expected STATUS=/path with a status from 400 to 599, got \"404\""),
            (items(&["399=/x.html"]), "error-pages: expected STATUS=/path with a status from 400 to 599, got \"399=/x.html\""),
            (items(&["600=/x.html"]), "with a status from 400 to 599"),
            (items(&["0404=/x.html"]), "with a status from 400 to 599"),
            (items(&["4o4=/x.html"]), "with a status from 400 to 599"),
            (items(&["=/x.html"]), "with a status from 400 to 599"),
            (items(&["404=404.html"]), "error-pages: 404: \"404.html\" is not an absolute path (starting with /)"),
            (items(&["404=/a/../404.html"]), "error-pages: 404: \"/a/../404.html\" is not normalized"),
            (items(&["404=//404.html"]), "is not normalized"),
            (items(&["404=/errors/"]), "names a directory"),
            (items(&["404=/a\\b.html"]), "contains a backslash"),
            (items(&["404=/a\u{7}.html"]), "contains control character U+0007"),
            (items(&["404=/a.html", "404=/b.html"]), "error-pages: status 404 is given twice"),
            (Integer(404), "error-pages: expected an array or a comma-separated string, got 404"),
        ] {
            let err = parse(value).unwrap_err();
            assert!(err.starts_with(want) || err.contains(want), "got {err}, want {want}");
        }
    }
}
