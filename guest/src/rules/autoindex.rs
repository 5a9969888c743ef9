//! `autoindex`: listings of directories that have no index file, and what
//! the two renderers (`html`, `json`) share: the entries, which of them are
//! shown, sizes and times as text, and fitting a listing into a byte limit.
//!
//! The host reads the directory (bounded: it says when it stopped early) and
//! gives each entry's name (UTF-8; it skips names that are not), kind, size
//! and modification time, sorted. The policy drops hidden entries
//! (`retain_listed`) and renders the rest within the host's inline-body
//! limit: when the whole listing would not fit, as many entries as fit are
//! rendered and the output says it is truncated. Off by default: a listing
//! shows what the operator may not mean to publish.

use crate::config::{self, Config};
use crate::dotfiles;
use crate::http_date::{civil_from_days, secs_from_ns, SECS_PER_DAY};
use crate::types::{self, EntryKind, SettingValue};

/// The `autoindex` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Autoindex {
    /// A directory without an index is 404 (the default).
    #[default]
    Off,
    /// An HTML page (`html::render_html`).
    Html,
    /// A JSON document (`json::render_json`).
    Json,
}

impl Autoindex {
    /// Parses `autoindex`: `"off"`, `"html"` or `"json"`; `false` is `off`.
    pub fn parse(name: &str, value: &SettingValue) -> Result<Autoindex, String> {
        match value {
            SettingValue::Boolean(false) => Ok(Autoindex::Off),
            SettingValue::Text(s) => match s.trim() {
                "off" => Ok(Autoindex::Off),
                "html" => Ok(Autoindex::Html),
                "json" => Ok(Autoindex::Json),
                _ => Err(config::expected(name, "off, html or json", value)),
            },
            _ => Err(config::expected(name, "off, html or json", value)),
        }
    }

    /// The `Content-Type` of the listing, `None` when off.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Autoindex::Off => None,
            Autoindex::Html => Some("text/html; charset=utf-8"),
            Autoindex::Json => Some("application/json"),
        }
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Anything else (socket, FIFO, device): listed, not linked, since the
    /// host serves none of them.
    Other,
}

/// One directory entry, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingEntry {
    /// The file name (one path segment, UTF-8).
    pub name: String,
    pub kind: Kind,
    /// Size in bytes (for a directory, whatever the file system says).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl From<&types::ListingEntry> for ListingEntry {
    /// An entry of the host's listing (WIT `listing-entry`).
    fn from(e: &types::ListingEntry) -> Self {
        ListingEntry {
            name: e.name.clone(),
            kind: match e.kind {
                EntryKind::File => Kind::File,
                EntryKind::Directory => Kind::Dir,
                EntryKind::Other => Kind::Other,
            },
            size: e.size,
            mtime_ns: e.mtime_ns,
        }
    }
}

/// Whether `name`, in the directory `dir_path` (ending with `/`), may be
/// listed: the dotfiles rule of `dotfiles::is_hidden` applied to the path the
/// entry's link leads to, so a listing never links what would answer 404
/// (`.git`, `.env`), and `/.well-known/` shows at the top when `well-known`
/// serves it.
pub fn is_listed(config: &Config, dir_path: &str, name: &str) -> bool {
    // Only names starting with `.` can be hidden (the directory itself is
    // not, or there would be no listing): no allocation for the others.
    !name.starts_with('.') || !dotfiles::is_hidden(config, &format!("{dir_path}{name}"))
}

/// Drops the entries `is_listed` says are hidden.
pub fn retain_listed(config: &Config, dir_path: &str, entries: &mut Vec<ListingEntry>) {
    entries.retain(|e| is_listed(config, dir_path, &e.name));
}

/// A size for people: bytes below 1 KiB, else one decimal (rounded down) in
/// the largest binary unit that keeps the number at least 1: `512 B`,
/// `1.5 KiB`, `3.0 GiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 2)) > 0 {
        unit += 1;
    }
    let tenths = (u128::from(bytes) * 10) >> (10 * (unit + 1));
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// An RFC 3339 UTC timestamp at second resolution, `2023-11-14T22:13:20Z`,
/// rounded towards the past like `Last-Modified`. An `i64` of nanoseconds
/// spans 1677-2262, so the year always has four digits.
pub(crate) fn rfc3339(mtime_ns: i64) -> String {
    let secs = secs_from_ns(mtime_ns);
    let days = secs.div_euclid(SECS_PER_DAY);
    let tod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// Renders a listing within `limit` bytes: `head`, then one row per entry
/// (`row(out, index, entry)` appends it), then `foot(truncated)`.
///
/// The whole listing is rendered if it fits. Otherwise as many rows as fit
/// with the truncated footer after them, and that footer, which says the
/// listing is incomplete (as it also does when the host said `truncated`).
/// Rows go in whole, so the output is never cut inside an escape or a
/// character, and it never exceeds `limit`: rows are only appended while
/// they fit, and a listing that turns out not to fit whole is cut back to
/// the last row after which the truncated footer fits. If not even the head
/// and a footer fit, the result is empty: the caller sends no body.
pub(crate) fn fit(
    head: &str,
    entries: &[ListingEntry],
    truncated: bool,
    limit: usize,
    mut row: impl FnMut(&mut String, usize, &ListingEntry),
    foot: impl Fn(bool) -> String,
) -> Vec<u8> {
    let foot_cut = foot(true);
    // The footer of the listing if every row gets in.
    let foot_end = if truncated {
        foot_cut.clone()
    } else {
        foot(false)
    };
    let shortest = foot_cut.len().min(foot_end.len());
    let mut out = String::from(head);
    // The longest prefix of whole rows that the truncated footer fits after.
    let mut safe = (out.len() + foot_cut.len() <= limit).then_some(out.len());
    let mut all = true;
    let mut buf = String::new();
    for (i, entry) in entries.iter().enumerate() {
        buf.clear();
        row(&mut buf, i, entry);
        if out.len() + buf.len() + shortest > limit {
            all = false;
            break;
        }
        out.push_str(&buf);
        // A truncated listing with every row would be a lie (JSON's
        // `"truncated":true` is shorter than `false`): after the last row,
        // only the complete footer will do.
        let last = i + 1 == entries.len();
        if (!last || truncated) && out.len() + foot_cut.len() <= limit {
            safe = Some(out.len());
        }
    }
    if all && out.len() + foot_end.len() <= limit {
        out.push_str(&foot_end);
    } else if let Some(safe) = safe {
        out.truncate(safe);
        out.push_str(&foot_cut);
    } else {
        return Vec::new();
    }
    debug_assert!(out.len() <= limit);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dotfiles;

    #[test]
    fn the_setting() {
        let parse = |v: SettingValue| Autoindex::parse("autoindex", &v);
        assert_eq!(parse(SettingValue::Text("off".into())), Ok(Autoindex::Off));
        assert_eq!(
            parse(SettingValue::Text(" html".into())),
            Ok(Autoindex::Html)
        );
        assert_eq!(
            parse(SettingValue::Text("json".into())),
            Ok(Autoindex::Json)
        );
        assert_eq!(parse(SettingValue::Boolean(false)), Ok(Autoindex::Off));
        assert_eq!(
            parse(SettingValue::Boolean(true)).unwrap_err(),
            "autoindex: expected off, html or json, got true"
        );
        assert_eq!(
            parse(SettingValue::Text("HTML".into())).unwrap_err(),
            "autoindex: expected off, html or json, got \"HTML\""
        );
        assert_eq!(Autoindex::default(), Autoindex::Off);
        assert_eq!(Autoindex::Off.content_type(), None);
        assert_eq!(Autoindex::Json.content_type(), Some("application/json"));
        assert_eq!(
            Autoindex::Html.content_type(),
            Some("text/html; charset=utf-8")
        );
    }

    fn entry(name: &str) -> ListingEntry {
        ListingEntry {
            name: name.into(),
            kind: Kind::File,
            size: 0,
            mtime_ns: 0,
        }
    }

    #[test]
    fn hidden_entries_follow_the_dotfiles_rule() {
        let config = Config::default();
        let names = |dir: &str, config: &Config| {
            let mut entries: Vec<_> = [".env", ".git", ".well-known", "a", "b.txt", "..x"]
                .iter()
                .map(|n| entry(n))
                .collect();
            retain_listed(config, dir, &mut entries);
            entries.into_iter().map(|e| e.name).collect::<Vec<_>>()
        };
        assert_eq!(names("/", &config), [".well-known", "a", "b.txt"]);
        assert_eq!(names("/sub/", &config), ["a", "b.txt"]);
        let no_well_known = Config {
            well_known: false,
            ..Config::default()
        };
        assert_eq!(names("/", &no_well_known), ["a", "b.txt"]);
        let allow = Config {
            dotfiles: Dotfiles::Allow,
            ..Config::default()
        };
        assert_eq!(names("/sub/", &allow).len(), 6);
        assert!(!is_listed(&config, "/.well-known/", ".secret"));
        assert!(is_listed(&config, "/.well-known/", "security.txt"));
    }

    #[test]
    fn human_sizes() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (1024 * 1024 - 1, "1023.9 KiB"),
            (1 << 20, "1.0 MiB"),
            (5 << 30, "5.0 GiB"),
            (3 << 40, "3.0 TiB"),
            (1 << 50, "1.0 PiB"),
            (1 << 60, "1.0 EiB"),
            (u64::MAX, "15.9 EiB"),
        ] {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_999_999_999), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(i64::MIN), "1677-09-21T00:12:43Z");
        assert_eq!(rfc3339(i64::MAX), "2262-04-11T23:47:16Z");
    }

    #[test]
    fn fitting_keeps_whole_rows_and_room_for_the_footer() {
        let entries: Vec<_> = ["aa", "bb", "cc"].iter().map(|n| entry(n)).collect();
        let render = |truncated: bool, limit: usize| {
            String::from_utf8(fit(
                "[",
                &entries,
                truncated,
                limit,
                |out, _, e| out.push_str(&e.name),
                |cut| if cut { "…]".into() } else { "]".into() },
            ))
            .unwrap()
        };
        // "…" is three bytes: the whole listing "[aabbcc]" is 8, "[aa…]" 7.
        assert_eq!(render(false, 100), "[aabbcc]");
        assert_eq!(render(false, 8), "[aabbcc]");
        assert_eq!(render(false, 7), "[aa…]");
        assert_eq!(render(false, 6), "[…]");
        assert_eq!(render(false, 5), "[…]");
        assert_eq!(render(false, 4), "");
        assert_eq!(render(false, 0), "");
        assert_eq!(render(true, 100), "[aabbcc…]");
        assert_eq!(render(true, 11), "[aabbcc…]");
        assert_eq!(render(true, 10), "[aabb…]");
        assert_eq!(render(true, 9), "[aabb…]");
        let none = |truncated: bool, limit: usize| {
            fit(
                "[",
                &[],
                truncated,
                limit,
                |_, _, _| {},
                |cut| if cut { "…]".into() } else { "]".into() },
            )
        };
        assert_eq!(none(false, 2), b"[]");
        assert_eq!(none(false, 1), b"");
        assert_eq!(none(true, 5), "[…]".as_bytes());
        assert_eq!(none(true, 4), b"");
    }
}
