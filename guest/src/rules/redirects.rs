//! `redirects`: rules in Netlify's `_redirects` syntax, compiled once and
//! matched per request.
//!
//! ```text
//! # comment
//! /home              /                       301
//! /news/:year/:slug  /blog/:year/:slug       302
//! /old/*             /new/:splat             301
//! /app/*             /app/index.html         200
//! /shop/*            /closed.html            404
//! /store id=:id      /blog/:id               301
//! /docs/*            https://docs.example.com/:splat  301!
//! ```
//!
//! One rule a line: `FROM [KEY=VALUE…] TO [STATUS[!]]`, tokens separated by
//! spaces or tabs; a token starting with `#` starts a comment. What each part
//! means, and which of Netlify's features are refused (with a message naming
//! the line), is in `rules`' summary; the choices that needed one:
//!
//! * **Shadowing.** Without `!` a rule applies only when nothing exists at the
//!   request path; with the path existing, non-forced rules are passed over
//!   and the first matching *forced* rule wins. `find` takes `exists` so the
//!   first match is the right one; the flag on the result alone could not
//!   give that (the rule that applies may be a later one).
//! * **Query strings.** The request's query is appended to a redirect target
//!   that has none of its own ("query string parameters are passed through"),
//!   except when the rule matched on query conditions: Netlify's own example
//!   sends `/store?id=my-blog-post` to `/blog/my-blog-post`, the parameter
//!   consumed. A rewrite's query is the request's, unchanged, so a rewrite
//!   target may not have one.
//! * **Encoding.** Sources are matched decoded (the host decodes the request
//!   path), so `/caf%C3%A9` and `/café` are the same rule. A `Location` is
//!   built encoded: the operator's literal text as written (only what a URI
//!   can never contain, such as non-ASCII, is encoded), each substituted
//!   value encoded for where it lands (`encode`), so a value with `?`, `#`,
//!   spaces or CR/LF cannot inject anything. A rewrite target is decoded and
//!   must come out a normalized path; a rule whose substituted path would not
//!   be one (possible only with a query value such as `..`) does not apply.
//! * **Matching** is `pattern`'s: ASCII case-insensitive, trailing `/`
//!   optional, `*` also matching nothing.

use std::borrow::Cow;

use super::encode::{self, COMPONENT, FRAGMENT_LITERAL, LITERAL, PATH, SEGMENT};
use super::pattern::{self, Captures, Index, Path, Pattern, Star};
use super::{lines, rules_text, MAX_PLACEHOLDERS, MAX_QUERY_CONDITIONS, MAX_RULES};
use crate::types::SettingValue;

/// The statuses a rule may have: redirects, then rewrites.
const STATUSES: [u16; 7] = [301, 302, 303, 307, 308, 200, 404];

/// Conditions Netlify supports that need what the policy does not have
/// (geolocation, the `Accept-Language` negotiation, identity, cookies,
/// signing keys): named in the refusal.
const CONDITIONS: [&str; 6] = ["Country", "Language", "Role", "Cookie", "Sign", "Signed"];

/// A compiled `_redirects` table.
#[derive(Debug, Clone, Default)]
pub struct Redirects {
    rules: Box<[Rule]>,
    index: Index,
}

/// The rule that applies to a request, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectMatch {
    /// The rule's line (from 1), for logs and errors.
    pub line: usize,
    /// Whether the rule was forced (`!`).
    pub force: bool,
    /// What to answer.
    pub action: Action,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer `status` (301, 302, 303, 307 or 308) with `Location: location`,
    /// a valid field value (visible ASCII, percent-encoded), either a path
    /// (one leading `/`) or an `http(s)://` URL.
    Redirect { status: u16, location: String },
    /// Serve what is at `path` (decoded and normalized, like a request path)
    /// with `status`: 200, or 404 for a custom not-found page.
    Rewrite { status: u16, path: String },
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    from: Pattern,
    conditions: Box<[Condition]>,
    target: Target,
    status: u16,
    force: bool,
}

/// `KEY=VALUE` or `KEY=:name`, decoded.
#[derive(Debug, Clone)]
struct Condition {
    key: Box<str>,
    expect: Expect,
}

#[derive(Debug, Clone)]
enum Expect {
    /// Any non-empty value, captured into the next query slot.
    Capture,
    /// Exactly this value.
    Exactly(Box<str>),
}

/// A piece of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text as it goes out: encoded for a redirect, decoded for a rewrite.
    Literal(Box<str>),
    /// A capture: path placeholders first, then query captures.
    Slot(usize),
    Splat,
}

#[derive(Debug, Clone)]
enum Target {
    Redirect {
        /// `scheme://authority` of an absolute target, else empty.
        origin: Box<str>,
        path: Box<[Part]>,
        query: Option<Box<[Part]>>,
        fragment: Option<Box<[Part]>>,
    },
    Rewrite(Box<[Part]>),
}

impl Redirects {
    /// Parses the `redirects` setting: an array of lines, or a file's text.
    pub fn parse(name: &str, value: &SettingValue) -> Result<Redirects, String> {
        let text = rules_text(name, value)?;
        Redirects::parse_text(&text).map_err(|e| format!("{name}: {e}"))
    }

    /// Parses the text of a `_redirects` file. Errors name the line.
    pub fn parse_text(text: &str) -> Result<Redirects, String> {
        let mut rules = Vec::new();
        for line in lines(text) {
            let (n, line) = line?;
            let tokens: Vec<&str> = line
                .split_ascii_whitespace()
                .take_while(|t| !t.starts_with('#'))
                .collect();
            if tokens.is_empty() {
                continue;
            }
            if rules.len() == MAX_RULES {
                return Err(format!("line {n}: more than {MAX_RULES} rules (the limit)"));
            }
            rules.push(Rule::parse(n, &tokens).map_err(|e| format!("line {n}: {e}"))?);
        }
        let index = Index::build(rules.iter().map(|r| &r.from));
        Ok(Redirects {
            rules: rules.into(),
            index,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that applies to a request for `path` (decoded and
    /// normalized, as the host gives it) with `raw_query` (undecoded, without
    /// `?`). `exists`: whether something the policy would serve is at `path`
    /// (a file, or a directory it would answer with an index or a listing);
    /// then only forced rules apply.
    pub fn find(&self, path: &str, raw_query: Option<&str>, exists: bool) -> Option<RedirectMatch> {
        let path = Path::new(path);
        let mut caps = Captures::new();
        for i in self.index.candidates(&path) {
            let rule = &self.rules[i];
            if exists && !rule.force {
                continue;
            }
            if !rule.from.matches(&path, &mut caps) {
                continue;
            }
            let Some(query_caps) = rule.match_query(raw_query) else {
                continue;
            };
            let values = Values {
                caps: &caps,
                path_slots: rule.from.names().len(),
                query: &query_caps,
            };
            if let Some(action) = rule.action(&values, raw_query) {
                return Some(RedirectMatch {
                    line: rule.line,
                    force: rule.force,
                    action,
                });
            }
        }
        None
    }
}

/// Captured values by slot.
struct Values<'a, 'p> {
    caps: &'a Captures<'p>,
    path_slots: usize,
    query: &'a [String],
}

impl Values<'_, '_> {
    fn get<'s>(&'s self, part: &'s Part) -> &'s str {
        match part {
            Part::Literal(l) => l,
            Part::Slot(i) if *i < self.path_slots => self.caps.values[*i],
            Part::Slot(i) => &self.query[*i - self.path_slots],
            Part::Splat => self.caps.splat,
        }
    }
}

impl Rule {
    fn parse(line: usize, tokens: &[&str]) -> Result<Rule, String> {
        let from_text = tokens[0];
        if has_scheme(from_text) {
            return Err(format!(
                "domain-level redirects are not supported (the source {from_text:?} has a scheme and host; rules match paths only)"
            ));
        }
        if !from_text.starts_with('/') {
            return Err(format!(
                "the source {from_text:?} is not a path starting with /"
            ));
        }
        let decoded = encode::decode(from_text)
            .ok_or_else(|| format!("the source {from_text:?} is not UTF-8 once percent-decoded"))?;
        let from = Pattern::parse(&decoded, Star::LastSegment)?;

        let rest = &tokens[1..];
        let Some(at) = rest
            .iter()
            .position(|t| t.starts_with('/') || has_scheme(t))
        else {
            return Err(
                match (
                    rest.iter().find(|t| is_status_like(t)),
                    rest.iter().find(|t| !t.contains('=')),
                ) {
                    (Some(status), _) => format!("missing target before the status {status}"),
                    (None, None) => "missing target".to_owned(),
                    (None, Some(t)) => {
                        format!("expected a target starting with /, http:// or https://, got {t:?}")
                    }
                },
            );
        };
        let mut names: Vec<Box<str>> = from.names().to_vec();
        let mut conditions = Vec::new();
        for token in &rest[..at] {
            if is_status_like(token) {
                return Err(format!("missing target before the status {token}"));
            }
            conditions.push(condition(token, &mut names)?);
        }
        if conditions.len() > MAX_QUERY_CONDITIONS {
            return Err(format!(
                "more than {MAX_QUERY_CONDITIONS} query conditions (the limit)"
            ));
        }
        if names.len() > MAX_PLACEHOLDERS {
            return Err(format!(
                "more than {MAX_PLACEHOLDERS} placeholders (the limit)"
            ));
        }

        let to = rest[at];
        let after = &rest[at + 1..];
        let (status, force, extra) = match after.first() {
            Some(t) if is_status_like(t) => {
                let (status, force) = status(t)?;
                (status, force, &after[1..])
            }
            _ => (301, false, after),
        };
        if let Some(token) = extra.first() {
            return Err(match token.split_once('=') {
                Some((key, _)) if CONDITIONS.iter().any(|c| c.eq_ignore_ascii_case(key)) => format!(
                    "the {key}= condition is not supported: it needs information the policy does not have (rules match the path and query only)"
                ),
                Some((key, _)) => format!(
                    "the {key}= condition is not supported (rules match the path and query only)"
                ),
                None => format!("unexpected {token:?} after the target and status"),
            });
        }

        let slot = |name: &str| -> Result<Part, String> {
            if name == "splat" {
                return if from.has_splat() {
                    Ok(Part::Splat)
                } else {
                    Err(format!(
                        "the target {to:?} uses :splat but the source has no *"
                    ))
                };
            }
            names
                .iter()
                .position(|n| **n == *name)
                .map(Part::Slot)
                .ok_or_else(|| {
                    format!(
                        "the target {to:?} uses :{name}, which the source does not define (write %3A for a literal colon)"
                    )
                })
        };
        let target = if status == 200 || status == 404 {
            rewrite_target(to, status, &slot)?
        } else {
            redirect_target(to, &slot)?
        };
        Ok(Rule {
            line,
            from,
            conditions: conditions.into(),
            target,
            status,
            force,
        })
    }

    /// The query captures if the request's query meets every condition
    /// (`Some(vec![])`, allocating nothing, for a rule without conditions).
    fn match_query(&self, raw_query: Option<&str>) -> Option<Vec<String>> {
        if self.conditions.is_empty() {
            return Some(Vec::new());
        }
        let raw = raw_query?;
        let mut caps = Vec::new();
        for c in self.conditions.iter() {
            let value = param(raw, &c.key)?;
            match &c.expect {
                Expect::Capture if value.is_empty() => return None,
                Expect::Capture => caps.push(value.into_owned()),
                Expect::Exactly(want) if *value != **want => return None,
                Expect::Exactly(_) => {}
            }
        }
        Some(caps)
    }

    fn action(&self, values: &Values<'_, '_>, raw_query: Option<&str>) -> Option<Action> {
        match &self.target {
            Target::Rewrite(parts) => {
                let mut path = String::new();
                for part in parts.iter() {
                    path.push_str(values.get(part));
                }
                Some(Action::Rewrite {
                    status: self.status,
                    path: normalized(path)?,
                })
            }
            Target::Redirect {
                origin,
                path,
                query,
                fragment,
            } => {
                let mut path_part = String::new();
                for part in path.iter() {
                    match part {
                        Part::Literal(l) => path_part.push_str(l),
                        Part::Slot(_) => encode::push(&mut path_part, values.get(part), SEGMENT),
                        Part::Splat => encode::push(&mut path_part, values.get(part), PATH),
                    }
                }
                // As for a rewrite: no `//` (an empty splat inside the path,
                // or `//host` at the start, which would leave the site), no
                // dot segment (a query value `..`).
                let path_part = if path_part.is_empty() {
                    path_part
                } else {
                    normalized(path_part)?
                };
                let mut location = String::with_capacity(origin.len() + path_part.len());
                location.push_str(origin);
                location.push_str(&path_part);
                let component = |out: &mut String, parts: &[Part]| {
                    for part in parts {
                        match part {
                            Part::Literal(l) => out.push_str(l),
                            _ => encode::push(out, values.get(part), COMPONENT),
                        }
                    }
                };
                match query {
                    Some(q) => {
                        location.push('?');
                        component(&mut location, q);
                    }
                    None if self.conditions.is_empty() => {
                        encode::push_query(&mut location, raw_query)
                    }
                    None => {}
                }
                if let Some(f) = fragment {
                    location.push('#');
                    component(&mut location, f);
                }
                Some(Action::Redirect {
                    status: self.status,
                    location,
                })
            }
        }
    }
}

/// `http://` or `https://`, any case.
fn has_scheme(token: &str) -> bool {
    let b = token.as_bytes();
    (b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"http://"))
        || (b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"https://"))
}

fn is_status_like(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
}

/// `301`, `200!`… → (status, forced).
fn status(token: &str) -> Result<(u16, bool), String> {
    let (digits, force) = match token.strip_suffix('!') {
        Some(d) => (d, true),
        None => (token, false),
    };
    let status = digits
        .parse::<u16>()
        .ok()
        .filter(|_| digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .filter(|s| STATUSES.contains(s));
    status.map(|s| (s, force)).ok_or_else(|| {
        format!(
            "unsupported status {token:?} (supported: 301, 302, 303, 307, 308 redirect; 200 and 404 rewrite; ! to force)"
        )
    })
}

/// A query condition `KEY=VALUE` or `KEY=:name` (a new capture, named in
/// `names` after the path placeholders).
fn condition(token: &str, names: &mut Vec<Box<str>>) -> Result<Condition, String> {
    let (key, value) = token.split_once('=').ok_or_else(|| {
        format!("expected a query condition KEY=VALUE or a target starting with /, http:// or https://, got {token:?}")
    })?;
    let key = encode::decode_query(key)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            format!("no parameter name (or not UTF-8) in the query condition {token:?}")
        })?;
    let expect = match value.strip_prefix(':') {
        Some(name) => {
            if !pattern::is_name(name) || name == "splat" {
                return Err(format!(
                    "{value:?} is not a placeholder name (a letter or _, then letters, digits or _; not :splat)"
                ));
            }
            if names.iter().any(|n| **n == *name) {
                return Err(format!("placeholder :{name} appears twice"));
            }
            names.push(name.into());
            Expect::Capture
        }
        None => Expect::Exactly(
            encode::decode_query(value)
                .ok_or_else(|| format!("the query condition {token:?} is not UTF-8 once decoded"))?
                .into(),
        ),
    };
    Ok(Condition {
        key: key.into(),
        expect,
    })
}

/// The first value of the query parameter `key`, decoded (`+` as space);
/// `Some("")` for a bare `key`. `None` if absent or not UTF-8.
fn param<'q>(raw: &'q str, key: &str) -> Option<Cow<'q, str>> {
    raw.split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| encode::decode_query(k).is_some_and(|k| k == key))
        .and_then(|(_, v)| encode::decode_query(v))
}

/// Splits a target into literals and placeholders. `:name` is a placeholder
/// when `name` is a placeholder name (so `https://host:8080` is literal);
/// `slot` resolves it or says why it cannot; `literal` converts the text
/// between placeholders.
fn template(
    text: &str,
    slot: &dyn Fn(&str) -> Result<Part, String>,
    literal: &dyn Fn(&str) -> Result<Box<str>, String>,
) -> Result<Box<[Part]>, String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b':' {
            let end = bytes[i + 1..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(bytes.len(), |n| i + 1 + n);
            let name = &text[i + 1..end];
            if pattern::is_name(name) {
                if start < i {
                    parts.push(Part::Literal(literal(&text[start..i])?));
                }
                parts.push(slot(name)?);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if start < text.len() {
        parts.push(Part::Literal(literal(&text[start..])?));
    }
    Ok(parts.into())
}

/// A rewrite target: a path, decoded, that must come out normalized.
fn rewrite_target(
    to: &str,
    status: u16,
    slot: &dyn Fn(&str) -> Result<Part, String>,
) -> Result<Target, String> {
    if has_scheme(to) {
        return Err(format!(
            "a {status} rewrite to a URL ({to:?}) is proxying, which is not supported: a rewrite target must be a path"
        ));
    }
    if to.contains(['?', '#']) {
        return Err(format!(
            "a {status} rewrite serves a file, so its target {to:?} cannot have a query (?) or fragment (#)"
        ));
    }
    let literal = |text: &str| -> Result<Box<str>, String> {
        let decoded = encode::decode(text)
            .ok_or_else(|| format!("the target {to:?} is not UTF-8 once percent-decoded"))?;
        if decoded.contains(|c: char| c.is_control() || c == '\\') {
            return Err(format!(
                "the target {to:?} decodes to a path with a control character or backslash"
            ));
        }
        Ok(decoded.into())
    };
    let parts = template(to, slot, &literal)?;
    // The target with every value as `x`, checked like a request path (a
    // trailing `/`, for a directory, is allowed).
    let skeleton = skeleton(&parts);
    let body = skeleton.strip_prefix('/').unwrap_or("");
    let body = body.strip_suffix('/').unwrap_or(body);
    if !skeleton.starts_with('/')
        || (!body.is_empty()
            && body
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".."))
    {
        return Err(format!(
            "the target {to:?} is not a normalized path (empty, . or .. segment)"
        ));
    }
    Ok(Target::Rewrite(parts))
}

/// A redirect target: a path (not `//…`), or an `http(s)://` URL whose
/// scheme and host are literal. Literals are kept as written (they are
/// URL-encoded already), with `%` checked and what a URI cannot contain
/// encoded.
fn redirect_target(
    to: &str,
    slot: &dyn Fn(&str) -> Result<Part, String>,
) -> Result<Target, String> {
    let (origin, rest) = if has_scheme(to) {
        let scheme_len = to.find("://").map_or(0, |i| i + 3);
        let authority_len = to[scheme_len..]
            .find(['/', '?', '#'])
            .unwrap_or(to.len() - scheme_len);
        let authority = &to[scheme_len..scheme_len + authority_len];
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@[]%".contains(&b);
        if authority.is_empty() || !authority.bytes().all(allowed) {
            return Err(format!("the target {to:?} has no valid host"));
        }
        if authority
            .split(':')
            .skip(1)
            .any(|s| s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        {
            return Err(format!(
                "the target {to:?} has a placeholder (or user:password) in its host, which is not supported"
            ));
        }
        let origin = format!("{}{authority}", to[..scheme_len].to_ascii_lowercase());
        (origin, &to[scheme_len + authority_len..])
    } else if to.starts_with("//") {
        return Err(format!(
            "the target {to:?} starts with //, which would name another host (write https://host/…)"
        ));
    } else {
        (String::new(), to)
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    let literal = |set: &'static percent_encoding::AsciiSet| {
        move |text: &str| -> Result<Box<str>, String> {
            if !encode::valid_escapes(text) {
                return Err(format!(
                    "the target {to:?} has a % that does not start a %XX escape (write %25 for %)"
                ));
            }
            let mut out = String::with_capacity(text.len());
            encode::push(&mut out, text, set);
            Ok(out.into())
        }
    };
    let path = template(path, slot, &literal(LITERAL))?;
    if skeleton(&path).split('/').any(|s| s == "." || s == "..") {
        return Err(format!("the target {to:?} has a . or .. segment"));
    }
    Ok(Target::Redirect {
        origin: origin.into(),
        path,
        query: query
            .map(|q| template(q, slot, &literal(LITERAL)))
            .transpose()?,
        fragment: fragment
            .map(|f| template(f, slot, &literal(FRAGMENT_LITERAL)))
            .transpose()?,
    })
}

/// A target with every value as `x`, to check what the literals make.
fn skeleton(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l,
            _ => "x",
        })
        .collect()
}

/// A substituted path as a request path: runs of `/` collapsed (an empty
/// splat in the middle leaves `//`), and `None` if a value brought in a `.`
/// or `..` segment, a backslash or a control character (which a `Location`
/// path never has: they are encoded).
fn normalized(path: String) -> Option<String> {
    let path = if path.contains("//") {
        let mut out = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    } else {
        path
    };
    let bad_segment = path.split('/').any(|s| s == "." || s == "..");
    let bad_char = path.contains(|c: char| c.is_control() || c == '\\');
    (path.starts_with('/') && !bad_segment && !bad_char).then_some(path)
}

#[cfg(test)]
mod tests;
