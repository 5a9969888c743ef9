//! `headers`: response header rules in Netlify's `_headers` syntax,
//! compiled once and matched per request.
//!
//! ```text
//! # Everything
//! /*
//!   X-Frame-Options: DENY
//!   X-Content-Type-Options: nosniff
//! /assets/*
//!   Cache-Control: public, max-age=31536000, immutable
//! /api/:version/*
//!   Access-Control-Allow-Origin: *
//! ```
//!
//! A line starting with `/` (after optional indentation) starts a rule for
//! that path pattern; the `Name: value` lines after it, indented by
//! convention, are its fields. `#` starts a comment line; blank lines are
//! ignored. A path line with no fields adds nothing.
//!
//! Patterns are `pattern`'s (ASCII case-insensitive, trailing `/` optional,
//! `:name` a whole segment) with `_headers`' wider `*`: once, anywhere in the
//! last segment, matching any remainder including `/` (`/assets/*`,
//! `/*.js`). Patterns are URL-encoded like `_redirects` sources and matched
//! decoded.
//!
//! **Every** matching rule applies, in file order. A field named by several
//! of them, or twice in one, gets one field with the values joined by `, `,
//! which is what Netlify does and what RFC 9110 §5.3 allows for list-valued
//! fields; a value already in the list is not repeated. Know the consequence for
//! fields that are not lists: `Cache-Control: no-cache` for `/*` and
//! `Cache-Control: max-age=60` for `/assets/*` give `/assets/x` both
//! directives, and two `X-Frame-Options` make an invalid one. `set-cookie`,
//! which cannot be joined, gets one field per value.
//!
//! Refused, naming the line: names that are not tokens, values that are
//! empty or not visible ASCII (the host only sends those, and would refuse
//! the whole decision), and the fields the host owns: framing
//! (`content-length`, `transfer-encoding`, `content-encoding`,
//! `content-range`) and hop-by-hop ones (`connection`, `keep-alive`,
//! `upgrade`, `trailer`, `te`, `proxy-connection`).
//!
//! How the fields combine with the policy's own (`cache-control`,
//! `content-type`…) is decided in `crate::header_rules`: a rule's field
//! replaces the policy's, `vary` and `set-cookie` are added.

use std::borrow::Cow;

use super::encode;
use super::pattern::{Captures, Index, Path, Pattern, Star};
use super::{lines, rules_text, MAX_FIELDS_PER_RULE, MAX_RULES};
use crate::fields::{is_token, trim_ows};
use crate::types::SettingValue;

/// Fields the host computes or that belong to the connection: a rule may not
/// set them (the host would refuse the decision).
pub const HOST_OWNED: [&str; 10] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
    "content-encoding",
    "content-range",
];

/// A compiled `_headers` table.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    rules: Box<[Rule]>,
    index: Index,
}

/// A response field from the rules: a lower-case name, and a value borrowed
/// from the rules unless several rules' values had to be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    pattern: Pattern,
    /// (lower-case name, value), one a line.
    fields: Box<[(Box<str>, Box<str>)]>,
}

impl HeaderRules {
    /// Parses the `headers` setting: an array of lines, or a file's text.
    pub fn parse(name: &str, value: &SettingValue) -> Result<HeaderRules, String> {
        let text = rules_text(name, value)?;
        HeaderRules::parse_text(&text).map_err(|e| format!("{name}: {e}"))
    }

    /// Parses the text of a `_headers` file. Errors name the line.
    pub fn parse_text(text: &str) -> Result<HeaderRules, String> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut fields: Vec<(Box<str>, Box<str>)> = Vec::new();
        let mut open: Option<(usize, Pattern)> = None;
        for line in lines(text) {
            let (n, line) = line?;
            let line = trim_ows(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('/') {
                if let Some((line, pattern)) = open.take() {
                    push_rule(&mut rules, line, pattern, &mut fields);
                }
                if rules.len() == MAX_RULES {
                    return Err(format!("line {n}: more than {MAX_RULES} rules (the limit)"));
                }
                open = Some((n, path_line(line).map_err(|e| format!("line {n}: {e}"))?));
                continue;
            }
            if open.is_none() {
                return Err(format!(
                    "line {n}: {line:?} comes before any path line (a line starting with /)"
                ));
            }
            let (name, value) = field_line(line).map_err(|e| format!("line {n}: {e}"))?;
            add_field(&mut fields, name, value).map_err(|e| format!("line {n}: {e}"))?;
        }
        if let Some((line, pattern)) = open {
            push_rule(&mut rules, line, pattern, &mut fields);
        }
        let index = Index::build(rules.iter().map(|r| &r.pattern));
        Ok(HeaderRules {
            rules: rules.into(),
            index,
        })
    }

    /// Number of rules (path blocks with at least one field).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The fields for a response to `path` (decoded and normalized, as the
    /// host gives it): every matching rule's, in file order, merged. Allocates
    /// nothing when no rule matches.
    pub fn for_path(&self, path: &str) -> Vec<HeaderField<'_>> {
        let mut out: Vec<HeaderField<'_>> = Vec::new();
        if self.rules.is_empty() {
            // No `headers` setting (the default): nothing to split the
            // path for on every response.
            return out;
        }
        for rule in self.matching(path) {
            for (name, value) in rule.fields.iter() {
                merge(&mut out, name, value);
            }
        }
        out
    }

    /// The lines of the rules matching `path`, in file order.
    pub fn matching_lines(&self, path: &str) -> Vec<usize> {
        self.matching(path).map(|r| r.line).collect()
    }

    fn matching<'a: 'p, 'p>(&'a self, path: &'p str) -> impl Iterator<Item = &'a Rule> + 'p {
        let path = Path::new(path);
        let mut caps = Captures::new();
        self.index
            .candidates(&path)
            .map(|i| &self.rules[i])
            .filter(move |r| r.pattern.matches(&path, &mut caps))
    }
}

fn push_rule(
    rules: &mut Vec<Rule>,
    line: usize,
    pattern: Pattern,
    fields: &mut Vec<(Box<str>, Box<str>)>,
) {
    if !fields.is_empty() {
        rules.push(Rule {
            line,
            pattern,
            fields: std::mem::take(fields).into(),
        });
    }
}

/// A path line: one URL-encoded pattern.
fn path_line(line: &str) -> Result<Pattern, String> {
    if line.contains([' ', '\t']) {
        return Err(format!(
            "a path line holds one path, without spaces (write %20), got {line:?}"
        ));
    }
    let decoded = encode::decode(line)
        .ok_or_else(|| format!("the path {line:?} is not UTF-8 once percent-decoded"))?;
    Pattern::parse(&decoded, Star::InLastSegment)
}

/// `Name: value` → (lower-case name, value), checked.
fn field_line(line: &str) -> Result<(String, &str), String> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        format!("expected `Name: value`, or a path starting with /, got {line:?}")
    })?;
    let name = trim_ows(name);
    if !is_token(name) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if HOST_OWNED.contains(&name.as_str()) {
        return Err(format!(
            "{name} is set by the host (message framing or the connection); a rule may not set it"
        ));
    }
    let value = trim_ows(value);
    if value.is_empty() {
        return Err(format!("no value for {name}"));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return Err(format!(
            "the value of {name} has U+{:04X}: header values must be visible ASCII, spaces and tabs",
            u32::from(c)
        ));
    }
    Ok((name, value))
}

/// Adds a field line to the open rule. Lines are kept as written and joined
/// per request (`merge`), so that a value is compared with each value
/// before it, from this rule or another.
fn add_field(
    fields: &mut Vec<(Box<str>, Box<str>)>,
    name: String,
    value: &str,
) -> Result<(), String> {
    if fields.len() == MAX_FIELDS_PER_RULE {
        return Err(format!(
            "more than {MAX_FIELDS_PER_RULE} header lines in one rule (the limit)"
        ));
    }
    fields.push((name.into(), value.into()));
    Ok(())
}

/// Adds a rule's field to the response's: a name already there gets the
/// value appended after `, ` (unless it is in the list already), except
/// `set-cookie`.
fn merge<'a>(out: &mut Vec<HeaderField<'a>>, name: &'a str, value: &'a str) {
    let existing = out
        .iter_mut()
        .find(|f| f.name == name && name != "set-cookie");
    match existing {
        Some(f) if in_list(&f.value, value) => {}
        Some(f) => {
            let joined = f.value.to_mut();
            joined.push_str(", ");
            joined.push_str(value);
        }
        None => out.push(HeaderField {
            name,
            value: Cow::Borrowed(value),
        }),
    }
}

/// Whether `value` is already in `list` (values joined by `, `), as a whole
/// element or run of elements: repeating it would change nothing.
fn in_list(list: &str, value: &str) -> bool {
    list.match_indices(value).any(|(i, _)| {
        let (before, after) = (&list[..i], &list[i + value.len()..]);
        (before.is_empty() || before.ends_with(", "))
            && (after.is_empty() || after.starts_with(", "))
    })
}

#[cfg(test)]
mod tests;
