//! `autoindex = "html"`: a directory listing as an HTML page.
//!
//! A table of name, size and modification time, with a link up (`../`)
//! except at `/`. The page is self-contained (a few lines of inline CSS, no
//! script), and everything in it that comes from the file system is made
//! inert:
//!
//! * names are HTML-escaped (`& < > " '`), and control characters (a newline
//!   in a file name, say) are shown as U+FFFD, which HTML text may not
//!   contain raw;
//! * links are relative (`./NAME`, directories `./NAME/`) and percent-encode
//!   every byte but RFC 3986 `unreserved`, so `a b?#%.txt`, `<script>` or
//!   `javascript:x` are links to exactly that file and nothing else, and an
//!   `href` needs no HTML escaping. Relative links need the page to be
//!   served at the directory's path with its trailing `/` (the policy
//!   redirects `/dir` to `/dir/` first), and keep working behind a proxy
//!   that mounts the site under a prefix;
//! * sizes are human-readable (`1.5 KiB`, exact bytes in `data-bytes`),
//!   times RFC 3339 UTC in a `<time>` element; directories show `-`;
//! * entries that are neither files nor directories are listed without a
//!   link (the host serves none).
//!
//! The page is at most `limit_bytes` long (`autoindex::fit`); a listing the
//! host cut short, or that does not fit, ends with a visible note saying so.
//! The policy should serve it with a restrictive `Content-Security-Policy`
//! (`default-src 'none'; style-src 'unsafe-inline'`) as defence in depth.

use super::autoindex::{fit, human_size, rfc3339, Kind, ListingEntry};
use super::encode::{self, NAME};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em}\
table{border-collapse:collapse}th,td{padding:.2em 1.5em .2em 0;text-align:left}\
td:nth-child(2){text-align:right}";

/// The listing of `dir_path` (the decoded request path, ending with `/`) as
/// an HTML page of at most `limit_bytes` bytes; empty if not even an empty
/// listing fits. `truncated`: the host stopped reading the directory early.
pub fn render_html(
    dir_path: &str,
    entries: &[ListingEntry],
    truncated: bool,
    limit_bytes: usize,
) -> Vec<u8> {
    let mut head = String::with_capacity(1024);
    head.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    head.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    head.push_str("<title>Index of ");
    escape(&mut head, dir_path);
    head.push_str("</title>\n<style>");
    head.push_str(STYLE);
    head.push_str("</style>\n</head>\n<body>\n<h1>Index of ");
    escape(&mut head, dir_path);
    head.push_str("</h1>\n<table>\n<thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead>\n<tbody>\n");
    if dir_path != "/" {
        head.push_str("<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    }
    fit(&head, entries, truncated, limit_bytes, row, foot)
}

fn row(out: &mut String, _: usize, entry: &ListingEntry) {
    out.push_str("<tr><td>");
    match entry.kind {
        Kind::File | Kind::Dir => {
            let slash = if entry.kind == Kind::Dir { "/" } else { "" };
            out.push_str("<a href=\"./");
            encode::push(out, &entry.name, NAME);
            out.push_str(slash);
            out.push_str("\">");
            escape(out, &entry.name);
            out.push_str(slash);
            out.push_str("</a>");
        }
        Kind::Other => escape(out, &entry.name),
    }
    out.push_str("</td>");
    if entry.kind == Kind::File {
        out.push_str(&format!(
            "<td data-bytes=\"{}\">{}</td>",
            entry.size,
            human_size(entry.size)
        ));
    } else {
        out.push_str("<td>-</td>");
    }
    let time = rfc3339(entry.mtime_ns);
    out.push_str(&format!(
        "<td><time datetime=\"{time}\">{time}</time></td></tr>\n"
    ));
}

fn foot(truncated: bool) -> String {
    let mut foot = String::from("</tbody>\n</table>\n");
    if truncated {
        foot.push_str(
            "<p><strong>Truncated:</strong> this directory has more entries than this page shows.</p>\n",
        );
    }
    foot.push_str("</body>\n</html>\n");
    foot
}

/// Appends `s` as HTML text (or attribute value): the five special
/// characters as references, control characters as U+FFFD.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
