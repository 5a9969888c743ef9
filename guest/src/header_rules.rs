//! `headers` (`_headers` rules) applied to a decision: the last step of
//! `decide`, for every response the policy gives, by the path the client
//! asked for (`hop::original_path`: a rewritten request gets the rules of
//! its address, not of the file that answered it).
//!
//! A rule's field **replaces** the policy's field of the same name: a
//! `Cache-Control` per glob is the point of the rules, and two
//! `Cache-Control` fields would combine into nonsense. Two exceptions:
//!
//! * `vary`: the rule's values are added to the policy's, never replace
//!   them. Dropping `Vary: Accept-Encoding` from a negotiated response would
//!   let a cache serve gzip to a client that cannot read it.
//! * `set-cookie`: one field per value, added (RFC 6265 §3: never folded).
//!
//! The rules cannot set the fields the host owns (refused when compiled).
//! A decision that the rules push over the host's `max-headers` or
//! `max-header-bytes` would be refused by the host as a bare `500`; the
//! policy answers `500` itself, with a body saying why, instead.

use crate::config::Config;
use crate::types::{Body, Decision, Header};

/// The decision with the header rules for `path` applied.
pub fn apply(config: &Config, path: &str, mut d: Decision) -> Decision {
    let fields = config.rules.headers.for_path(path);
    if fields.is_empty() {
        return d;
    }
    for field in fields {
        match field.name {
            "vary" => add_vary(&mut d.headers, &field.value),
            "set-cookie" => d.headers.push(Header::new(field.name, field.value)),
            name => {
                d.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
                d.headers.push(Header::new(name, field.value));
            }
        }
    }
    let limits = config.limits;
    let bytes: usize = d.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if d.headers.len() > limits.max_headers as usize || bytes > limits.max_header_bytes as usize {
        return too_many(config, d.headers.len(), bytes);
    }
    d
}

/// Adds each of `values` (comma-separated) to the response's `Vary`, unless
/// already there (case-insensitive); a `Vary: *` stays as it is.
fn add_vary(headers: &mut Vec<Header>, values: &str) {
    let at = headers
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("vary"));
    let mut current: Vec<String> = at
        .map(|i| {
            headers[i]
                .value
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if current.iter().any(|v| v == "*") {
        return;
    }
    for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        if !current.iter().any(|c| c.eq_ignore_ascii_case(v)) {
            current.push(v.to_owned());
        }
    }
    let joined = current.join(", ");
    match at {
        Some(i) => headers[i].value = joined,
        None => headers.push(Header::new("vary", joined)),
    }
}

fn too_many(config: &Config, fields: usize, bytes: usize) -> Decision {
    let limits = config.limits;
    let text = format!(
        "Internal Server Error: the header rules for this path make {fields} fields of {bytes} \
         bytes, over the host's limits of {} fields and {} bytes\n",
        limits.max_headers, limits.max_header_bytes
    );
    let fits = u32::try_from(text.len()).is_ok_and(|n| n <= limits.max_inline);
    Decision {
        status: 500,
        headers: vec![
            Header::new("content-type", "text/plain; charset=utf-8"),
            Header::new("x-content-type-options", "nosniff"),
        ],
        body: if fits {
            Body::Inline(text.into_bytes())
        } else {
            Body::Empty
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{HostLimits, SettingValue};

    fn config(lines: &[&str]) -> Config {
        let mut c = Config::default();
        let value = SettingValue::Items(lines.iter().map(|s| s.to_string()).collect());
        c.rules.set("headers", &value).unwrap().unwrap();
        c
    }

    fn decision(headers: &[(&str, &str)]) -> Decision {
        Decision {
            status: 200,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: Body::Empty,
        }
    }

    fn pairs(d: &Decision) -> Vec<(&str, &str)> {
        d.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    #[test]
    fn rules_replace_add_and_join() {
        let c = config(&[
            "/*",
            "  Cache-Control: public, max-age=60",
            "  Vary: Origin",
            "  Set-Cookie: a=1",
            "/assets/*",
            "  Vary: accept-encoding",
            "  Set-Cookie: b=2",
            "  Access-Control-Allow-Origin: *",
        ]);
        let d = decision(&[
            ("content-type", "text/css"),
            ("Cache-Control", "max-age=3600"),
            ("set-cookie", "policy=1"),
            ("vary", "Accept-Encoding"),
        ]);
        let got = apply(&c, "/assets/x.css", d.clone());
        assert_eq!(
            pairs(&got),
            [
                ("content-type", "text/css"),
                ("set-cookie", "policy=1"),
                ("vary", "Accept-Encoding, Origin"),
                ("cache-control", "public, max-age=60"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("access-control-allow-origin", "*"),
            ]
        );
        // No rule matches: untouched.
        let none = config(&["/api/*", "  X-A: 1"]);
        assert_eq!(apply(&none, "/assets/x.css", d.clone()), d);
        // A Vary of * stays.
        let star = apply(&c, "/x", decision(&[("vary", "*")]));
        assert_eq!(star.header("vary"), Some("*"));
    }

    #[test]
    fn over_the_host_limits_is_a_500_that_says_why() {
        let mut c = config(&["/*", "  X-A: 1", "  X-B: 2", "  X-C: 3"]);
        c.limits = HostLimits {
            max_headers: 4,
            ..c.limits
        };
        let ok = apply(&c, "/", decision(&[("content-type", "text/plain")]));
        assert_eq!((ok.status, ok.headers.len()), (200, 4));
        let over = apply(&c, "/", decision(&[("a", "1"), ("b", "2")]));
        assert_eq!(over.status, 500);
        let Body::Inline(text) = &over.body else {
            panic!("{over:?}")
        };
        let text = String::from_utf8_lossy(text);
        assert!(
            text.contains("5 fields") && text.contains("limits of 4 fields"),
            "{text}"
        );
        c.limits.max_header_bytes = 10;
        c.limits.max_headers = 64;
        assert_eq!(apply(&c, "/", decision(&[])).status, 500);
    }
}
