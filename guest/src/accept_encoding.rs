//! `Accept-Encoding` (RFC 9110 §12.5.3): which content codings the client
//! takes, and how much it likes each.

use crate::coding;
use crate::fields::{is_token, trim_ows};
use crate::types::ContentCoding;

/// A quality value in thousandths: 0 (not acceptable) to 1000 (`q=1`).
pub type Quality = u16;

/// The highest quality, and the one an element without `q` has.
pub const Q_MAX: Quality = 1000;

/// A parsed `Accept-Encoding` field. Only the codings this policy can send
/// are kept; others (`deflate`, `compress`, unknown tokens) cannot affect the
/// choice and are dropped while parsing, so this never allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// The weight of each coding of `coding::CODINGS`, by index.
    codings: [Option<Quality>; coding::N],
    identity: Option<Quality>,
    any: Option<Quality>,
}

impl AcceptEncoding {
    /// Parses a field value (all `Accept-Encoding` lines joined with commas).
    ///
    /// Tokens are case-insensitive, aliases count as their coding (`x-gzip`
    /// is `gzip`, §8.4.1.3; see `coding::CODINGS`), whitespace
    /// around commas and semicolons is optional, empty elements are skipped.
    /// An element that is not `coding [ OWS ";" OWS "q=" qvalue ]` (a bad
    /// qvalue such as `q=2` or `q=0.5000`, another parameter, stray bytes) is
    /// ignored as a whole: guessing its weight could pick a coding the client
    /// refused. When a coding is listed twice the first element counts.
    pub fn parse(value: &str) -> AcceptEncoding {
        let mut ae = AcceptEncoding::default();
        for element in value.split(',') {
            if let Some((token, q)) = parse_element(element) {
                let slot = if let Some(c) = ContentCoding::from_accept_token(token) {
                    &mut ae.codings[c.index()]
                } else if token.eq_ignore_ascii_case("identity") {
                    &mut ae.identity
                } else if token == "*" {
                    &mut ae.any
                } else {
                    continue;
                };
                slot.get_or_insert(q);
            }
        }
        ae
    }

    /// How acceptable `coding` is: its own weight, else the `*` weight, else 0
    /// (a coding neither listed nor covered by `*` is not acceptable).
    pub fn quality(&self, coding: ContentCoding) -> Quality {
        self.codings[coding.index()].or(self.any).unwrap_or(0)
    }

    /// The weight the client gave "no coding": its own, else the `*` weight;
    /// `None` when neither is listed, in which case identity is acceptable but
    /// not preferred to anything (§12.5.3: it is acceptable "unless
    /// specifically excluded").
    pub fn identity_quality(&self) -> Option<Quality> {
        self.identity.or(self.any)
    }
}

/// `codings [ weight ]` → (coding token, quality).
fn parse_element(element: &str) -> Option<(&str, Quality)> {
    let mut parts = element.split(';');
    let coding = trim_ows(parts.next()?);
    if !is_token(coding) {
        return None;
    }
    let q = match parts.next() {
        None => Q_MAX,
        Some(weight) => {
            let weight = trim_ows(weight);
            let q = weight
                .strip_prefix("q=")
                .or_else(|| weight.strip_prefix("Q="))?;
            parse_qvalue(q)?
        }
    };
    // Only one parameter, the weight, is defined for Accept-Encoding.
    if parts.next().is_some() {
        return None;
    }
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (§12.4.2),
/// in thousandths.
pub fn parse_qvalue(s: &str) -> Option<Quality> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |n, d| n * 10 + Quality::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ContentCoding::{Br, Gzip, Zstd};

    fn q(value: &str, coding: ContentCoding) -> Quality {
        AcceptEncoding::parse(value).quality(coding)
    }

    #[test]
    fn qvalues() {
        let cases: &[(&str, Option<Quality>)] = &[
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.005", Some(5)),
            ("0.999", Some(999)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.0001", None),
            ("2", None),
            ("-0", None),
            ("", None),
            (".5", None),
            ("0.5 ", None),
            ("0,5", None),
            ("00.5", None),
            ("0.a", None),
            ("1e0", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_qvalue(s), *want, "{s:?}");
        }
    }

    #[test]
    fn typical_browser_fields() {
        let chrome = "gzip, deflate, br, zstd";
        assert_eq!(
            (q(chrome, Gzip), q(chrome, Br), q(chrome, Zstd)),
            (1000, 1000, 1000)
        );
        assert_eq!(AcceptEncoding::parse(chrome).identity_quality(), None);
        let curl = "deflate, gzip";
        assert_eq!((q(curl, Gzip), q(curl, Br)), (1000, 0));
    }

    #[test]
    fn weights_and_wildcards() {
        let ae = AcceptEncoding::parse("br;q=0.9, gzip;q=0.5, *;q=0.1");
        assert_eq!(
            (ae.quality(Br), ae.quality(Gzip), ae.quality(Zstd)),
            (900, 500, 100)
        );
        assert_eq!(ae.identity_quality(), Some(100));
        let ae = AcceptEncoding::parse("*");
        assert_eq!((ae.quality(Br), ae.identity_quality()), (1000, Some(1000)));
        let ae = AcceptEncoding::parse("gzip, *;q=0");
        assert_eq!(
            (ae.quality(Gzip), ae.quality(Br), ae.identity_quality()),
            (1000, 0, Some(0))
        );
        let ae = AcceptEncoding::parse("identity;q=0, *;q=0.3");
        assert_eq!((ae.quality(Zstd), ae.identity_quality()), (300, Some(0)));
    }

    #[test]
    fn refusals() {
        assert_eq!(q("br;q=0, gzip", Br), 0);
        assert_eq!(q("gzip;q=0.0", Gzip), 0);
        assert_eq!(
            AcceptEncoding::parse("identity;q=0").identity_quality(),
            Some(0)
        );
    }

    #[test]
    fn empty_and_absent_fields_accept_nothing_but_identity() {
        let ae = AcceptEncoding::parse("");
        assert_eq!(
            (ae.quality(Gzip), ae.quality(Br), ae.quality(Zstd)),
            (0, 0, 0)
        );
        assert_eq!(ae.identity_quality(), None);
        assert_eq!(AcceptEncoding::parse(" , ,"), AcceptEncoding::default());
    }

    #[test]
    fn tokens_are_case_insensitive_and_x_gzip_is_gzip() {
        assert_eq!(q("GZIP", Gzip), 1000);
        assert_eq!(q("Br;Q=0.5", Br), 500);
        assert_eq!(q("x-gzip;q=0.7", Gzip), 700);
        assert_eq!(q("ZStd", Zstd), 1000);
    }

    #[test]
    fn whitespace_is_tolerated() {
        assert_eq!(q(" gzip ; q=0.4 ,br", Gzip), 400);
        assert_eq!(q("\tbr\t;\tq=0.2\t", Br), 200);
        assert_eq!(q("gzip,br", Br), 1000);
    }

    #[test]
    fn malformed_elements_are_ignored() {
        for value in [
            "gzip;q=2",
            "gzip;q=",
            "gzip;q=high",
            "gzip;q = 0.5",
            "gzip;level=9",
            "gzip;q=0.5;q=0.6",
            "gzip;",
            "gz ip",
            "gzip q=0.5",
            "\"gzip\"",
            "gzip;q=0.5000",
        ] {
            assert_eq!(q(value, Gzip), 0, "{value:?}");
            assert_eq!(
                q(&format!("{value}, br"), Br),
                1000,
                "{value:?} spoils the rest"
            );
        }
    }

    #[test]
    fn first_listing_of_a_coding_wins() {
        assert_eq!(q("gzip;q=0, gzip", Gzip), 0);
        assert_eq!(q("gzip, x-gzip;q=0", Gzip), 1000);
        assert_eq!(q("gzip;q=bad, gzip;q=0.3", Gzip), 300);
    }

    #[test]
    fn unknown_codings_do_not_matter() {
        let ae = AcceptEncoding::parse("deflate, compress, exi, pack200-gzip");
        assert_eq!(ae, AcceptEncoding::default());
    }

    /// Tokens a generated field may use, with the coding they stand for.
    const TOKENS: &[&str] = &[
        "gzip", "x-gzip", "br", "zstd", "identity", "*", "deflate", "compress", "foo-bar",
    ];

    fn slot(token: &str) -> Option<usize> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(0),
            "br" => Some(1),
            "zstd" => Some(2),
            "identity" => Some(3),
            "*" => Some(4),
            _ => None,
        }
    }

    fn format_q(q: Quality) -> String {
        match q {
            1000 => "1".to_owned(),
            q => format!("0.{q:03}").trim_end_matches('0').to_owned(),
        }
    }

    fn arb_element() -> impl Strategy<Value = (String, Option<Quality>, String)> {
        (
            prop::sample::select(TOKENS),
            any::<bool>(),
            prop::option::of(0..=1000u16),
            "[ \t]{0,2}",
        )
            .prop_map(|(token, upper, q, ows)| {
                let token = if upper {
                    token.to_ascii_uppercase()
                } else {
                    token.to_owned()
                };
                (token, q, ows)
            })
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            let ae = AcceptEncoding::parse(&s);
            for c in ContentCoding::ALL {
                prop_assert!(ae.quality(c) <= Q_MAX);
            }
            prop_assert!(ae.identity_quality().is_none_or(|q| q <= Q_MAX));
        }

        #[test]
        fn never_panics_on_field_like_input(s in "[a-z*;=q0-9., \t]{0,40}") {
            let _ = AcceptEncoding::parse(&s);
        }

        #[test]
        fn qvalues_are_in_range(s in "[0-9.]{0,6}") {
            if let Some(q) = parse_qvalue(&s) {
                prop_assert!(q <= Q_MAX);
            }
        }

        #[test]
        fn formatted_qvalues_parse_back(q in 0..=1000u16) {
            prop_assert_eq!(parse_qvalue(&format_q(q)), Some(q));
        }

        #[test]
        fn generated_lists_round_trip(elements in prop::collection::vec(arb_element(), 0..10)) {
            let value = elements
                .iter()
                .map(|(token, q, ows)| match q {
                    Some(q) => format!("{ows}{token}{ows};{ows}q={}{ows}", format_q(*q)),
                    None => format!("{ows}{token}{ows}"),
                })
                .collect::<Vec<_>>()
                .join(",");
            // The model: first listing per coding wins.
            let mut expected: [Option<Quality>; 5] = [None; 5];
            for (token, q, _) in &elements {
                if let Some(i) = slot(token) {
                    expected[i].get_or_insert(q.unwrap_or(Q_MAX));
                }
            }
            let ae = AcceptEncoding::parse(&value);
            let any = expected[4];
            prop_assert_eq!(ae.quality(Gzip), expected[0].or(any).unwrap_or(0));
            prop_assert_eq!(ae.quality(Br), expected[1].or(any).unwrap_or(0));
            prop_assert_eq!(ae.quality(Zstd), expected[2].or(any).unwrap_or(0));
            prop_assert_eq!(ae.identity_quality(), expected[3].or(any));
        }
    }
}
