//! `autoindex = "json"`: a directory listing as a JSON document, for
//! scripts and single-page apps.
//!
//! The schema (one entry a line, in the host's order):
//!
//! ```json
//! {"path":"/files/","entries":[
//! {"name":"docs","type":"dir","size":4096,"mtime":"2023-11-14T22:13:20Z"},
//! {"name":"a.txt","type":"file","size":1536,"mtime":"2023-11-14T22:13:20Z"}
//! ],"truncated":false}
//! ```
//!
//! * `path`: the directory's decoded request path, ending with `/`;
//! * `entries[].name`: the file name (a link to it is the directory's URL
//!   plus the name percent-encoded, plus `/` for a directory);
//! * `entries[].type`: `"file"`, `"dir"` or `"other"` (socket, FIFO,
//!   device: not served);
//! * `entries[].size`: bytes, as the file system reports it (an exact
//!   integer; JavaScript numbers lose precision above 2^53 bytes, 8 PiB);
//! * `entries[].mtime`: modification time, RFC 3339 UTC, whole seconds;
//! * `truncated`: `true` when not every entry is listed (the host stopped
//!   reading the directory, or the document would not fit the byte limit).
//!
//! Strings are escaped per RFC 8259 §7: `"` and `\` with a backslash, every
//! control character U+0000-U+001F as `\u00XX`; everything else is UTF-8 as
//! is (names are UTF-8: the host skips those that are not). The document is
//! at most `limit_bytes` long (`autoindex::fit`).

use super::autoindex::{fit, rfc3339, Kind, ListingEntry};

/// The listing of `dir_path` as a JSON document of at most `limit_bytes`
/// bytes; empty if not even an empty listing fits. `truncated`: the host
/// stopped reading the directory early.
pub fn render_json(
    dir_path: &str,
    entries: &[ListingEntry],
    truncated: bool,
    limit_bytes: usize,
) -> Vec<u8> {
    let mut head = String::from("{\"path\":");
    string(&mut head, dir_path);
    head.push_str(",\"entries\":[\n");
    fit(&head, entries, truncated, limit_bytes, row, |cut| {
        format!("\n],\"truncated\":{cut}}}\n")
    })
}

fn row(out: &mut String, i: usize, entry: &ListingEntry) {
    if i > 0 {
        out.push_str(",\n");
    }
    out.push_str("{\"name\":");
    string(out, &entry.name);
    let kind = match entry.kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Other => "other",
    };
    out.push_str(&format!(
        ",\"type\":\"{kind}\",\"size\":{},\"mtime\":\"{}\"}}",
        entry.size,
        rfc3339(entry.mtime_ns)
    ));
}

/// Appends `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JSON value, from the strict RFC 8259 parser below: an oracle
    /// written independently of the renderer (numbers kept as text).
    #[derive(Debug, Clone, PartialEq)]
    enum Value {
        Null,
        Bool(bool),
        Number(String),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl std::ops::Index<&str> for Value {
        type Output = Value;
        fn index(&self, key: &str) -> &Value {
            match self {
                Value::Object(members) => members
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(&Value::Null, |(_, v)| v),
                _ => &Value::Null,
            }
        }
    }

    impl std::ops::Index<usize> for Value {
        type Output = Value;
        fn index(&self, i: usize) -> &Value {
            match self {
                Value::Array(items) => items.get(i).unwrap_or(&Value::Null),
                _ => &Value::Null,
            }
        }
    }

    impl Value {
        fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
        fn as_u64(&self) -> Option<u64> {
            match self {
                Value::Number(n) => n.parse().ok(),
                _ => None,
            }
        }
        fn as_bool(&self) -> Option<bool> {
            match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }
        }
        fn as_array(&self) -> Option<&Vec<Value>> {
            match self {
                Value::Array(a) => Some(a),
                _ => None,
            }
        }
    }

    /// Parses a whole JSON text (RFC 8259), or says where it is invalid.
    fn parse_json(text: &[u8]) -> Result<Value, String> {
        let mut p = Parser { s: text, i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != text.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) -> Result<(), String> {
            if self.s.get(self.i) == Some(&b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", b as char, self.i))
            }
        }
        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }
        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(members));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        members.push((key, self.value()?));
                        self.ws();
                        if self.s.get(self.i) == Some(&b',') {
                            self.i += 1;
                        } else {
                            self.eat(b'}')?;
                            return Ok(Value::Object(members));
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        if self.s.get(self.i) == Some(&b',') {
                            self.i += 1;
                        } else {
                            self.eat(b']')?;
                            return Ok(Value::Array(items));
                        }
                    }
                }
                Some(b'"') => Ok(Value::String(self.string()?)),
                Some(b't') => self.literal("true", Value::Bool(true)),
                Some(b'f') => self.literal("false", Value::Bool(false)),
                Some(b'n') => self.literal("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(format!("no value at {}", self.i)),
            }
        }
        fn digits(&mut self) -> usize {
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            self.i - start
        }
        fn number(&mut self) -> Result<Value, String> {
            let start = self.i;
            if self.s[self.i] == b'-' {
                self.i += 1;
            }
            match self.s.get(self.i) {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return Err(format!("bad number at {start}")),
            }
            if self.s.get(self.i) == Some(&b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return Err(format!("bad fraction at {start}"));
                }
            }
            if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return Err(format!("bad exponent at {start}"));
                }
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
            Ok(Value::Number(text.to_owned()))
        }
        fn hex4(&mut self) -> Result<u32, String> {
            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
            let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
            self.i += 4;
            u32::from_str_radix(hex, 16).map_err(|e| e.to_string())
        }
        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                let b = *self.s.get(self.i).ok_or("unterminated string")?;
                self.i += 1;
                match b {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    0..=0x1f => return Err(format!("raw control byte {b:#x} in a string")),
                    b'\\' => {
                        let e = *self.s.get(self.i).ok_or("unterminated escape")?;
                        self.i += 1;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let code = if (0xd800..0xdc00).contains(&hi) {
                                    self.eat(b'\\')?;
                                    self.eat(b'u')?;
                                    let lo = self.hex4()?;
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    hi
                                };
                                char::from_u32(code).ok_or("bad \\u escape")?
                            }
                            _ => return Err(format!("bad escape \\{}", e as char)),
                        };
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => out.push(b),
                }
            }
        }
    }

    #[test]
    fn the_oracle_rejects_invalid_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "\"a\nb\"",
            "\"\\x\"",
            "01",
            "1.",
            "-",
            "tru",
            "[] []",
            "\"\\u12\"",
            "{\"a\":1,}",
        ] {
            assert!(parse_json(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let v = parse_json(br#" {"a":[1,-2.5e3,true,null],"b":"\u00e9\ud83d\ude00\/"} "#).unwrap();
        assert_eq!(v["a"][0].as_u64(), Some(1));
        assert_eq!(v["a"][2].as_bool(), Some(true));
        assert_eq!(v["b"].as_str(), Some("é😀/"));
    }

    const MTIME: i64 = 1_700_000_000_000_000_000;

    fn entry(name: &str, kind: Kind, size: u64) -> ListingEntry {
        ListingEntry {
            name: name.into(),
            kind,
            size,
            mtime_ns: MTIME,
        }
    }

    fn doc(dir: &str, entries: &[ListingEntry], truncated: bool, limit: usize) -> String {
        String::from_utf8(render_json(dir, entries, truncated, limit)).unwrap()
    }

    #[test]
    fn a_small_directory() {
        let entries = [
            entry("docs", Kind::Dir, 4096),
            entry("a \"b\"\\c\n\u{1}\u{7f}é.txt", Kind::File, 1536),
            entry("fifo", Kind::Other, 0),
        ];
        assert_eq!(
            doc("/files/", &entries, false, 65536),
            "{\"path\":\"/files/\",\"entries\":[\n\
             {\"name\":\"docs\",\"type\":\"dir\",\"size\":4096,\"mtime\":\"2023-11-14T22:13:20Z\"},\n\
             {\"name\":\"a \\\"b\\\"\\\\c\\u000a\\u0001\u{7f}é.txt\",\"type\":\"file\",\"size\":1536,\"mtime\":\"2023-11-14T22:13:20Z\"},\n\
             {\"name\":\"fifo\",\"type\":\"other\",\"size\":0,\"mtime\":\"2023-11-14T22:13:20Z\"}\n\
             ],\"truncated\":false}\n"
        );
        assert_eq!(
            doc("/", &[], true, 65536),
            "{\"path\":\"/\",\"entries\":[\n\n],\"truncated\":true}\n"
        );
    }

    #[test]
    fn truncation_fits_the_limit() {
        let entries: Vec<_> = (0..50)
            .map(|i| entry(&format!("f{i}"), Kind::File, u64::MAX))
            .collect();
        let whole = doc("/d/", &entries, false, 1 << 20);
        assert_eq!(doc("/d/", &entries, false, whole.len()), whole);
        let cut = doc("/d/", &entries, false, whole.len() - 1);
        let v: Value = parse_json(cut.as_bytes()).unwrap();
        assert_eq!(v["truncated"], Value::Bool(true));
        assert_eq!(v["entries"].as_array().unwrap().len(), 49);
        assert_eq!(v["entries"][48]["size"].as_u64(), Some(u64::MAX));
        assert!(render_json("/d/", &entries, false, 40).is_empty());
    }

    fn arb_entry() -> impl Strategy<Value = ListingEntry> {
        (
            prop_oneof![
                "[^/\u{0}]{1,20}",
                "[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}é a]{1,10}"
            ],
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
        fn documents_are_valid_json_within_the_limit(
            dir in prop_oneof![Just("/".to_owned()), "/[^/]{1,10}/"],
            entries in prop::collection::vec(arb_entry(), 0..40),
            truncated in any::<bool>(),
            limit in prop_oneof![0usize..400, 400usize..4000, Just(65536usize)],
        ) {
            let out = render_json(&dir, &entries, truncated, limit);
            prop_assert!(out.len() <= limit);
            if out.is_empty() {
                // Only when not even an empty, truncated document fits.
                prop_assert!(render_json(&dir, &[], true, limit).is_empty());
                return Ok(());
            }
            let v: Value = parse_json(&out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(v["path"].as_str(), Some(dir.as_str()));
            let listed = v["entries"].as_array().unwrap();
            prop_assert!(listed.len() <= entries.len());
            for (got, want) in listed.iter().zip(&entries) {
                prop_assert_eq!(got["name"].as_str(), Some(want.name.as_str()));
                prop_assert_eq!(got["size"].as_u64(), Some(want.size));
                let kind = match want.kind { Kind::File => "file", Kind::Dir => "dir", Kind::Other => "other" };
                prop_assert_eq!(got["type"].as_str(), Some(kind));
                prop_assert_eq!(got["mtime"].as_str().map(str::len), Some(20));
            }
            let whole = render_json(&dir, &entries, false, usize::MAX);
            let cut = truncated || whole.len() > limit;
            prop_assert_eq!(v["truncated"].as_bool(), Some(cut));
            if !cut {
                prop_assert_eq!(listed.len(), entries.len());
            }
        }
    }
}
