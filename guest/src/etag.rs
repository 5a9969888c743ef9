//! Entity tags (RFC 9110 §8.8.3): making them for representations, parsing
//! the `If-Match` / `If-None-Match` lists, and the two comparison functions.

use std::fmt;

use crate::fields::trim_ows;
use crate::types::FileMeta;

/// An entity tag. `tag` is the opaque-tag without its quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    pub tag: String,
}

impl EntityTag {
    pub fn strong(tag: impl Into<String>) -> Self {
        EntityTag {
            weak: false,
            tag: tag.into(),
        }
    }

    pub fn weak(tag: impl Into<String>) -> Self {
        EntityTag {
            weak: true,
            tag: tag.into(),
        }
    }

    /// A validator for one version of one stored file: it changes whenever the
    /// file is replaced (inode), modified (mtime, to the nanosecond) or resized.
    /// `suffix` tells apart the representations of one resource (`br`,
    /// `gzip`…); it is the only difference when two are made from the same
    /// file (identity and on-the-fly compressed).
    pub fn for_file(meta: &FileMeta, suffix: Option<&str>, weak: bool) -> Self {
        // `{:x}-{:x}-{:x}`, written without the formatting machinery (this
        // runs for every file response); a negative `mtime-ns` is written
        // as its two's complement, as `{:x}` of an `i64` does.
        let mut tag = String::with_capacity(3 * 16 + 2 + suffix.map_or(0, |s| s.len() + 1));
        push_hex(&mut tag, meta.inode);
        tag.push('-');
        push_hex(&mut tag, meta.mtime_ns as u64);
        tag.push('-');
        push_hex(&mut tag, meta.size);
        if let Some(suffix) = suffix {
            tag.push('-');
            tag.push_str(suffix);
        }
        EntityTag { weak, tag }
    }

    /// Strong comparison: both strong and identical (used by `If-Match` and
    /// `If-Range`).
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison: identical opaque tags, weakness ignored (used by
    /// `If-None-Match`).
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.tag == other.tag
    }

    /// Parses exactly one entity-tag (optional whitespace around it allowed),
    /// as `If-Range` carries.
    pub fn parse(value: &str) -> Option<EntityTag> {
        let mut items = Items { rest: value };
        match (items.next(), items.rest.is_empty()) {
            (Some(Item::Tag(tag)), true) => Some(tag.to_owned()),
            _ => None,
        }
    }
}

/// Appends `n` in lower-case hex without leading zeros (`{:x}`).
fn push_hex(out: &mut String, n: u64) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for place in (0..digits).rev() {
        let nibble = (n >> (place * 4)) & 0xf;
        out.push(char::from(b"0123456789abcdef"[nibble as usize]));
    }
}

impl EntityTag {
    /// The field value (`"tag"` or `W/"tag"`): `to_string()`, with one
    /// allocation of the right size.
    pub fn to_field(&self) -> String {
        let mut out = String::with_capacity(self.tag.len() + 4);
        if self.weak {
            out.push_str("W/");
        }
        out.push('"');
        out.push_str(&self.tag);
        out.push('"');
        out
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.tag)
    }
}

/// A borrowed entity tag, as found in a request field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagRef<'a> {
    pub weak: bool,
    pub tag: &'a str,
}

impl TagRef<'_> {
    fn to_owned(self) -> EntityTag {
        EntityTag {
            weak: self.weak,
            tag: self.tag.to_owned(),
        }
    }
}

/// One element of an `If-Match` / `If-None-Match` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item<'a> {
    Any,
    Tag(TagRef<'a>),
}

/// The value of `If-Match` or `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags; malformed elements are left out, so it may be
    /// empty (and then matches nothing).
    Tags(Vec<EntityTag>),
}

impl Condition {
    /// Parses a field value. The grammar is `"*" / #entity-tag`; a `*`
    /// anywhere in the list (which happens when a client sends the field twice
    /// and the lines are joined) is taken as `*`. Elements that are not
    /// entity tags (unquoted values, bad characters) are skipped rather than
    /// voiding the field, so one bad element does not hide good ones.
    pub fn parse(value: &str) -> Condition {
        let mut tags = Vec::new();
        for item in (Items { rest: value }) {
            match item {
                Item::Any => return Condition::Any,
                Item::Tag(t) => tags.push(t.to_owned()),
            }
        }
        Condition::Tags(tags)
    }

    /// `If-Match` semantics: `*` or a strong match with `current`.
    pub fn matches_strong(&self, current: &EntityTag) -> bool {
        match self {
            Condition::Any => true,
            Condition::Tags(tags) => tags.iter().any(|t| t.strong_eq(current)),
        }
    }

    /// `If-None-Match` semantics: `*` or a weak match with `current`.
    pub fn matches_weak(&self, current: &EntityTag) -> bool {
        match self {
            Condition::Any => true,
            Condition::Tags(tags) => tags.iter().any(|t| t.weak_eq(current)),
        }
    }

    /// `Condition::parse(value).matches_strong(current)` (`strong`) or
    /// `.matches_weak(current)`, without collecting the list: what a
    /// request's `If-Match` / `If-None-Match` is checked with, once per
    /// file response.
    pub fn value_matches(value: &str, current: &EntityTag, strong: bool) -> bool {
        (Items { rest: value }).any(|item| match item {
            Item::Any => true,
            Item::Tag(t) if strong => !t.weak && !current.weak && t.tag == current.tag,
            Item::Tag(t) => t.tag == current.tag,
        })
    }
}

/// Iterates over the well-formed elements of an entity-tag list.
struct Items<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            // Empty elements and the whitespace around commas (RFC 9110 §5.6.1).
            self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
            if self.rest.is_empty() {
                return None;
            }
            let item = self.element();
            // An element must end at a comma or at the end of the field.
            let after = trim_ows(self.rest);
            if after.is_empty() || after.starts_with(',') {
                self.rest = after;
                if let Some(item) = item {
                    return Some(item);
                }
            } else {
                self.skip_element();
            }
        }
    }
}

impl<'a> Items<'a> {
    /// Consumes one element from the front of `rest`; `None` if it is not a
    /// well-formed `*` or entity-tag (the caller then skips what remains of it).
    fn element(&mut self) -> Option<Item<'a>> {
        if let Some(rest) = self.rest.strip_prefix('*') {
            self.rest = rest;
            return Some(Item::Any);
        }
        let (weak, quoted) = match self.rest.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, self.rest),
        };
        let body = quoted.strip_prefix('"')?;
        let Some(end) = body.find('"') else {
            // An unterminated tag swallows the rest of the field.
            self.rest = "";
            return None;
        };
        let tag = &body[..end];
        self.rest = &body[end + 1..];
        // etagc = %x21 / %x23-7E / obs-text: no controls, spaces or DEL.
        let valid = tag
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80);
        valid.then_some(Item::Tag(TagRef { weak, tag }))
    }

    /// Drops everything up to the next comma.
    fn skip_element(&mut self) {
        self.rest = self.rest.find(',').map_or("", |i| &self.rest[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tags(value: &str) -> Vec<EntityTag> {
        match Condition::parse(value) {
            Condition::Tags(t) => t,
            Condition::Any => panic!("{value:?} parsed as *"),
        }
    }

    #[test]
    fn file_tags_change_with_every_part_of_the_metadata() {
        let meta = FileMeta {
            size: 10,
            mtime_ns: 1_000_000_007,
            inode: 42,
            device: 1,
        };
        let base = EntityTag::for_file(&meta, None, false);
        assert_eq!(base.to_string(), "\"2a-3b9aca07-a\"");
        for other in [
            FileMeta { size: 11, ..meta },
            FileMeta {
                mtime_ns: 1_000_000_008,
                ..meta
            },
            FileMeta { inode: 43, ..meta },
        ] {
            assert_ne!(EntityTag::for_file(&other, None, false), base);
        }
        assert_eq!(
            EntityTag::for_file(&meta, Some("br"), false).to_string(),
            "\"2a-3b9aca07-a-br\""
        );
        assert_eq!(
            EntityTag::for_file(&meta, Some("gzip"), true).to_string(),
            "W/\"2a-3b9aca07-a-gzip\""
        );
    }

    #[test]
    fn negative_mtimes_make_valid_tags() {
        let meta = FileMeta {
            size: 0,
            mtime_ns: -1,
            inode: 0,
            device: 0,
        };
        let t = EntityTag::for_file(&meta, None, false);
        assert_eq!(EntityTag::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn comparison_functions_follow_the_rfc_table() {
        // RFC 9110 §8.8.3.2.
        let w1 = EntityTag::weak("1");
        let w2 = EntityTag::weak("2");
        let s1 = EntityTag::strong("1");
        assert!(!w1.strong_eq(&w1));
        assert!(w1.weak_eq(&w1));
        assert!(!w1.strong_eq(&w2));
        assert!(!w1.weak_eq(&w2));
        assert!(!w1.strong_eq(&s1));
        assert!(w1.weak_eq(&s1));
        assert!(s1.strong_eq(&s1));
        assert!(s1.weak_eq(&s1));
    }

    #[test]
    fn parses_lists() {
        assert_eq!(tags("\"xyzzy\""), vec![EntityTag::strong("xyzzy")]);
        assert_eq!(
            tags("\"xyzzy\", \"r2d2xxxx\", \"c3piozzzz\""),
            vec![
                EntityTag::strong("xyzzy"),
                EntityTag::strong("r2d2xxxx"),
                EntityTag::strong("c3piozzzz")
            ]
        );
        assert_eq!(
            tags("W/\"xyzzy\",\t\"a\""),
            vec![EntityTag::weak("xyzzy"), EntityTag::strong("a")]
        );
        assert_eq!(tags("\"\""), vec![EntityTag::strong("")]);
        assert_eq!(
            tags("\"a,b\", \"c\""),
            vec![EntityTag::strong("a,b"), EntityTag::strong("c")]
        );
        assert_eq!(tags(" , ,\"a\",, "), vec![EntityTag::strong("a")]);
        assert_eq!(tags(""), vec![]);
    }

    #[test]
    fn star_means_any() {
        assert_eq!(Condition::parse("*"), Condition::Any);
        assert_eq!(Condition::parse(" * "), Condition::Any);
        assert_eq!(Condition::parse("\"a\", *"), Condition::Any);
        assert_eq!(tags("**"), vec![]);
        assert_eq!(tags("*a, \"b\""), vec![EntityTag::strong("b")]);
    }

    #[test]
    fn skips_malformed_elements() {
        assert_eq!(tags("xyzzy"), vec![]);
        assert_eq!(tags("xyzzy, \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(tags("w/\"lower\", \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(tags("W/ \"space\", \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(tags("\"a\"b, \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(tags("\"has space\", \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(tags("\"ctl\u{1}\", \"ok\""), vec![EntityTag::strong("ok")]);
        assert_eq!(
            tags("\"ok\", \"unterminated"),
            vec![EntityTag::strong("ok")]
        );
        assert_eq!(tags("\"ünï\""), vec![EntityTag::strong("ünï")]);
    }

    #[test]
    fn single_tag_parsing() {
        assert_eq!(EntityTag::parse(" \"a\" "), Some(EntityTag::strong("a")));
        assert_eq!(EntityTag::parse("W/\"a\""), Some(EntityTag::weak("a")));
        assert_eq!(EntityTag::parse("\"a\", \"b\""), None);
        assert_eq!(EntityTag::parse("a"), None);
        assert_eq!(EntityTag::parse("*"), None);
        assert_eq!(EntityTag::parse(""), None);
        assert_eq!(EntityTag::parse("Sun, 06 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn conditions_match() {
        let current = EntityTag::strong("v1");
        assert!(Condition::parse("*").matches_strong(&current));
        assert!(Condition::parse("\"v0\", \"v1\"").matches_strong(&current));
        assert!(!Condition::parse("W/\"v1\"").matches_strong(&current));
        assert!(Condition::parse("W/\"v1\"").matches_weak(&current));
        assert!(!Condition::parse("\"v2\"").matches_weak(&current));
        assert!(!Condition::parse("").matches_weak(&current));
        assert!(Condition::parse("\"v1\"").matches_weak(&EntityTag::weak("v1")));
    }

    fn arb_tag() -> impl Strategy<Value = EntityTag> {
        (any::<bool>(), "[!#-~\u{80}-\u{10ffff}]{0,12}")
            .prop_map(|(weak, tag)| EntityTag { weak, tag })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = Condition::parse(&s);
            let _ = EntityTag::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_tag_like_input(s in "[W/\" ,*a\t]{0,24}") {
            let _ = Condition::parse(&s);
            let _ = EntityTag::parse(&s);
        }

        #[test]
        fn generated_lists_parse_back(list in prop::collection::vec(arb_tag(), 0..8), sep in "[ \t]{0,2},[ \t]{0,2}") {
            let value = list.iter().map(ToString::to_string).collect::<Vec<_>>().join(&sep);
            prop_assert_eq!(Condition::parse(&value), Condition::Tags(list));
        }

        /// `for_file` and `to_field` write by hand what `format!` and
        /// `Display` wrote.
        #[test]
        fn file_tags_are_the_format_macros(
            inode in prop_oneof![Just(0u64), any::<u64>()],
            mtime_ns in prop_oneof![Just(0i64), Just(-1i64), any::<i64>()],
            size in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
            suffix in prop::option::of("[a-z]{1,5}"),
            weak in any::<bool>(),
        ) {
            let meta = FileMeta { size, mtime_ns, inode, device: 1 };
            let tag = EntityTag::for_file(&meta, suffix.as_deref(), weak);
            let mut want = format!("{inode:x}-{mtime_ns:x}-{size:x}");
            if let Some(s) = &suffix {
                want = format!("{want}-{s}");
            }
            prop_assert_eq!(&tag.tag, &want);
            let field = format!("{}\"{want}\"", if weak { "W/" } else { "" });
            prop_assert_eq!(tag.to_field(), field.clone());
            prop_assert_eq!(tag.to_string(), field);
        }

        /// The lazy check is the parsed list's.
        #[test]
        fn value_matches_is_the_parsed_conditions(
            value in "[W/\" ,*ab\t]{0,24}",
            tag in "[ab]{0,2}",
            weak in any::<bool>(),
        ) {
            let current = EntityTag { weak, tag };
            let parsed = Condition::parse(&value);
            prop_assert_eq!(
                Condition::value_matches(&value, &current, true),
                parsed.matches_strong(&current)
            );
            prop_assert_eq!(
                Condition::value_matches(&value, &current, false),
                parsed.matches_weak(&current)
            );
        }

        #[test]
        fn single_tags_parse_back(tag in arb_tag()) {
            prop_assert_eq!(EntityTag::parse(&tag.to_string()), Some(tag));
        }

        #[test]
        fn parsed_tags_are_well_formed(s in any::<String>()) {
            if let Condition::Tags(tags) = Condition::parse(&s) {
                for t in tags {
                    prop_assert!(!t.tag.contains('"'));
                    prop_assert!(t.tag.bytes().all(|b| b > 0x20 && b != 0x7f));
                }
            }
        }
    }
}
