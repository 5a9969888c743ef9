//! Range requests (RFC 9110 §14): parsing the `Range` field and resolving it
//! against the length of the selected representation.
//!
//! Two steps, because the policy must know whether a request carries a
//! usable `Range` *before* it picks the representation (a ranged request is
//! never compressed on the fly), while the outcome depends on that
//! representation's length.
//!
//! Written out rather than taken from `http-range-header`, the crate for
//! this, because its answers are not the ones RFC 9110 and the WIT contract
//! need here: it refuses overlapping ranges and a suffix longer than the
//! representation as errors, where §14.1.2 has the suffix select the whole
//! representation and §14.2 lets the server coalesce (and the host requires
//! coalesced, ascending ranges); it does not tell an unknown unit (ignore)
//! from a malformed field, nor count the bytes requested against the
//! representation (the `Excessive` defence below). What is left to parse is
//! a split on `,` and `-`; `guest/fuzz` fuzzes it and the tests below
//! check it against a model.

use std::cmp::Ordering;

use crate::fields::{is_token, trim_ows};
use crate::types::ByteRange;

/// One `range-spec` of the `bytes` unit. Offsets too large for a `u64` are
/// saturated to `u64::MAX`, which no representation reaches, so they resolve
/// exactly as their true values would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`, or `first-` when `last` is `None`.
    FromTo { first: u64, last: Option<u64> },
    /// `-length`: the final `length` bytes.
    Suffix(u64),
}

/// Why a `Range` field is ignored, in which case the whole representation is
/// sent (200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not `range-unit "=" range-set`, or a bytes range-spec that is not
    /// `first-last`, `first-` or `-suffix`, or has `last < first` (RFC 9110
    /// §14.1.1 calls the whole set invalid then; §14.2 lets a server ignore it).
    Malformed,
    /// A unit other than `bytes` (compared case-insensitively, §14.1).
    UnknownUnit,
    /// More range-specs than the configured `max-ranges`.
    TooMany,
    /// The satisfiable ranges add up to more bytes than the representation
    /// has, before coalescing: overlapping or repeated ranges that only make
    /// the server work (the Apache "Range: bytes=0-,0-,…" attack,
    /// CVE-2011-3192). Sending the whole representation once is cheaper and
    /// still correct.
    Excessive,
}

/// What a `Range` field asks for, once the representation's length is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Send these ranges (206): ascending, within the representation, neither
    /// overlapping nor adjacent, at least one.
    Satisfiable(Vec<ByteRange>),
    /// No range-spec selects any byte (416 with `Content-Range: bytes */LEN`).
    Unsatisfiable,
    /// Send the whole representation (200).
    Ignored(Ignored),
}

/// Parses a `Range` field value, refusing more than `max_specs` range-specs
/// (counted before coalescing; empty list elements do not count).
pub fn parse(value: &str, max_specs: usize) -> Result<Vec<RangeSpec>, Ignored> {
    let value = trim_ows(value);
    let (unit, set) = value.split_once('=').ok_or(Ignored::Malformed)?;
    if !is_token(unit) {
        return Err(Ignored::Malformed);
    }
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(Ignored::UnknownUnit);
    }
    let mut specs = Vec::new();
    for element in set.split(',').map(trim_ows).filter(|e| !e.is_empty()) {
        if specs.len() >= max_specs {
            return Err(Ignored::TooMany);
        }
        specs.push(parse_spec(element).ok_or(Ignored::Malformed)?);
    }
    if specs.is_empty() {
        return Err(Ignored::Malformed);
    }
    Ok(specs)
}

fn parse_spec(element: &str) -> Option<RangeSpec> {
    let (first, last) = element.split_once('-')?;
    if first.is_empty() {
        return Some(RangeSpec::Suffix(saturating_number(digits(last)?)));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(RangeSpec::FromTo {
            first: saturating_number(first),
            last: None,
        });
    }
    let last = digits(last)?;
    if compare_numbers(first, last) == Ordering::Greater {
        return None;
    }
    Some(RangeSpec::FromTo {
        first: saturating_number(first),
        last: Some(saturating_number(last)),
    })
}

/// `1*DIGIT`.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

fn saturating_number(digits: &str) -> u64 {
    digits.bytes().fold(0u64, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .unwrap_or(u64::MAX)
    })
}

/// Compares two decimal digit strings by value, however long they are, so
/// `last < first` is detected exactly even beyond `u64`.
fn compare_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Resolves range-specs against a representation of `size` bytes (§14.1.2):
/// a spec selects bytes if its first-pos is below `size` (a last-pos beyond
/// the end is clamped) or it is a suffix of non-zero length (longer than the
/// representation means all of it). Nothing of an empty representation can
/// be selected.
pub fn resolve(specs: &[RangeSpec], size: u64) -> Resolution {
    let Some(end) = size.checked_sub(1) else {
        return Resolution::Unsatisfiable;
    };
    let mut ranges: Vec<ByteRange> = Vec::with_capacity(specs.len());
    let mut total: u128 = 0;
    for spec in specs {
        let range = match *spec {
            RangeSpec::FromTo { first, .. } if first > end => continue,
            RangeSpec::FromTo { first, last } => ByteRange {
                first,
                last: last.map_or(end, |l| l.min(end)),
            },
            RangeSpec::Suffix(0) => continue,
            RangeSpec::Suffix(len) => ByteRange {
                first: size.saturating_sub(len),
                last: end,
            },
        };
        total += u128::from(range.last - range.first) + 1;
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Resolution::Unsatisfiable;
    }
    if total > u128::from(size) {
        return Resolution::Ignored(Ignored::Excessive);
    }
    Resolution::Satisfiable(coalesce(ranges))
}

/// Sorts ranges and merges those that overlap or touch, as the host requires.
pub fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_unstable();
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(prev) if r.first <= prev.last.saturating_add(1) => {
                prev.last = prev.last.max(r.last)
            }
            _ => out.push(r),
        }
    }
    out
}

/// `parse` then `resolve`.
pub fn evaluate(value: &str, size: u64, max_specs: usize) -> Resolution {
    match parse(value, max_specs) {
        Ok(specs) => resolve(&specs, size),
        Err(why) => Resolution::Ignored(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Resolution::{Satisfiable, Unsatisfiable};

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    fn eval(value: &str, size: u64) -> Resolution {
        evaluate(value, size, 16)
    }

    #[test]
    fn single_ranges() {
        let cases: &[(&str, u64, Resolution)] = &[
            ("bytes=0-499", 10_000, Satisfiable(vec![r(0, 499)])),
            ("bytes=500-999", 10_000, Satisfiable(vec![r(500, 999)])),
            ("bytes=0-0", 1, Satisfiable(vec![r(0, 0)])),
            ("bytes=9500-", 10_000, Satisfiable(vec![r(9500, 9999)])),
            ("bytes=0-", 10_000, Satisfiable(vec![r(0, 9999)])),
            ("bytes=-500", 10_000, Satisfiable(vec![r(9500, 9999)])),
            ("bytes=-1", 10_000, Satisfiable(vec![r(9999, 9999)])),
            ("bytes=9999-9999", 10_000, Satisfiable(vec![r(9999, 9999)])),
        ];
        for (value, size, want) in cases {
            assert_eq!(&eval(value, *size), want, "{value}");
        }
    }

    #[test]
    fn last_pos_and_suffix_are_clamped_to_the_representation() {
        assert_eq!(
            eval("bytes=100-999999", 1000),
            Satisfiable(vec![r(100, 999)])
        );
        assert_eq!(eval("bytes=-5000", 1000), Satisfiable(vec![r(0, 999)]));
        assert_eq!(eval("bytes=-1000", 1000), Satisfiable(vec![r(0, 999)]));
        assert_eq!(
            eval("bytes=0-18446744073709551615", 10),
            Satisfiable(vec![r(0, 9)])
        );
        assert_eq!(
            eval("bytes=0-99999999999999999999999999", 10),
            Satisfiable(vec![r(0, 9)])
        );
        assert_eq!(
            eval("bytes=-99999999999999999999999999", 10),
            Satisfiable(vec![r(0, 9)])
        );
    }

    #[test]
    fn multiple_ranges_are_sorted_and_coalesced() {
        let cases: &[(&str, Vec<ByteRange>)] = &[
            ("bytes=0-9,20-29", vec![r(0, 9), r(20, 29)]),
            ("bytes=20-29,0-9", vec![r(0, 9), r(20, 29)]),
            ("bytes=0-9,10-19", vec![r(0, 19)]),
            ("bytes=0-9,5-14", vec![r(0, 14)]),
            ("bytes=0-49,10-19", vec![r(0, 49)]),
            ("bytes=50-59,0-9,-10", vec![r(0, 9), r(50, 59), r(90, 99)]),
            ("bytes=0-0,2-2,1-1", vec![r(0, 2)]),
            ("bytes=90-,-5", vec![r(90, 99)]),
        ];
        for (value, want) in cases {
            assert_eq!(eval(value, 100), Satisfiable(want.clone()), "{value}");
        }
    }

    #[test]
    fn unsatisfiable_ranges_are_dropped_from_a_satisfiable_set() {
        assert_eq!(eval("bytes=0-9,500-600", 100), Satisfiable(vec![r(0, 9)]));
        assert_eq!(eval("bytes=-0,0-9", 100), Satisfiable(vec![r(0, 9)]));
    }

    #[test]
    fn unsatisfiable_sets() {
        for (value, size) in [
            ("bytes=100-", 100),
            ("bytes=100-200", 100),
            ("bytes=1000-2000,500-", 100),
            ("bytes=-0", 100),
            ("bytes=-0,-0", 100),
            ("bytes=0-0", 0),
            ("bytes=-1", 0),
            ("bytes=0-", 0),
            ("bytes=18446744073709551615-", 100),
            ("bytes=99999999999999999999999-", u64::MAX),
        ] {
            assert_eq!(eval(value, size), Unsatisfiable, "{value} of {size}");
        }
    }

    #[test]
    fn malformed_fields_are_ignored() {
        for value in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes= , ",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=1- 2",
            "bytes=1 -2",
            "bytes=0x10-0x20",
            "bytes=5-4",
            "bytes=0-1,5-4",
            "bytes=0-1;2-3",
            "bytes=１-2",
            "bytes =0-1",
            "=0-1",
            "b ytes=0-1",
            "bytes=100000000000000000000001-100000000000000000000000",
        ] {
            assert_eq!(
                eval(value, 100),
                Resolution::Ignored(Ignored::Malformed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn unknown_units_are_ignored_and_bytes_is_case_insensitive() {
        assert_eq!(
            eval("items=0-1", 100),
            Resolution::Ignored(Ignored::UnknownUnit)
        );
        assert_eq!(
            eval("none=0-1", 100),
            Resolution::Ignored(Ignored::UnknownUnit)
        );
        assert_eq!(eval("Bytes=0-1", 100), Satisfiable(vec![r(0, 1)]));
        assert_eq!(eval("BYTES=0-1", 100), Satisfiable(vec![r(0, 1)]));
    }

    #[test]
    fn whitespace_and_empty_elements_are_tolerated() {
        assert_eq!(eval(" bytes=0-1 ", 100), Satisfiable(vec![r(0, 1)]));
        assert_eq!(
            eval("bytes=0-1 , 5-6", 100),
            Satisfiable(vec![r(0, 1), r(5, 6)])
        );
        assert_eq!(
            eval("bytes=,0-1,,\t5-6,", 100),
            Satisfiable(vec![r(0, 1), r(5, 6)])
        );
        assert_eq!(eval("bytes=007-008", 100), Satisfiable(vec![r(7, 8)]));
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let sixteen = (0..16)
            .map(|i| format!("{}-{}", i * 10, i * 10))
            .collect::<Vec<_>>()
            .join(",");
        let seventeen = format!("{sixteen},200-200");
        assert!(matches!(eval(&format!("bytes={sixteen}"), 1000), Satisfiable(v) if v.len() == 16));
        assert_eq!(
            eval(&format!("bytes={seventeen}"), 1000),
            Resolution::Ignored(Ignored::TooMany)
        );
        assert_eq!(
            evaluate("bytes=0-1,3-4", 100, 1),
            Resolution::Ignored(Ignored::TooMany)
        );
        assert_eq!(
            evaluate("bytes=0-1", 100, 0),
            Resolution::Ignored(Ignored::TooMany)
        );
    }

    #[test]
    fn excessive_overlap_is_ignored() {
        assert_eq!(
            eval("bytes=0-,0-", 100),
            Resolution::Ignored(Ignored::Excessive)
        );
        assert_eq!(
            eval("bytes=0-60,40-99", 100),
            Resolution::Ignored(Ignored::Excessive)
        );
        assert_eq!(
            eval("bytes=-60,0-50", 100),
            Resolution::Ignored(Ignored::Excessive)
        );
        // Exactly the length is fine (and coalesces to everything).
        assert_eq!(eval("bytes=0-49,50-99", 100), Satisfiable(vec![r(0, 99)]));
        assert_eq!(eval("bytes=0-,-0", 100), Satisfiable(vec![r(0, 99)]));
    }

    #[test]
    fn huge_representations_do_not_overflow() {
        let max = u64::MAX;
        assert_eq!(eval("bytes=0-", max), Satisfiable(vec![r(0, max - 1)]));
        assert_eq!(
            eval("bytes=-1", max),
            Satisfiable(vec![r(max - 1, max - 1)])
        );
        assert_eq!(
            eval("bytes=0-,0-", max),
            Resolution::Ignored(Ignored::Excessive)
        );
        assert_eq!(
            eval("bytes=0-0,18446744073709551613-", max),
            Satisfiable(vec![r(0, 0), r(max - 2, max - 1)])
        );
    }

    #[test]
    fn coalesce_handles_the_top_of_the_u64_range() {
        let max = u64::MAX;
        assert_eq!(coalesce(vec![r(max, max), r(0, max)]), vec![r(0, max)]);
        assert_eq!(
            coalesce(vec![r(5, 5), r(max - 1, max), r(6, 7)]),
            vec![r(5, 7), r(max - 1, max)]
        );
        assert_eq!(coalesce(vec![]), vec![]);
    }

    #[test]
    fn parse_reports_specs() {
        assert_eq!(
            parse("bytes=1-2,3-,-4", 16),
            Ok(vec![
                RangeSpec::FromTo {
                    first: 1,
                    last: Some(2)
                },
                RangeSpec::FromTo {
                    first: 3,
                    last: None
                },
                RangeSpec::Suffix(4),
            ])
        );
        assert_eq!(
            parse("bytes=99999999999999999999-", 16),
            Ok(vec![RangeSpec::FromTo {
                first: u64::MAX,
                last: None
            }])
        );
    }

    /// A generated, valid range-spec for a representation of up to 300 bytes.
    fn arb_spec() -> impl Strategy<Value = RangeSpec> {
        prop_oneof![
            (0u64..400, prop::option::of(0u64..400)).prop_map(|(a, b)| match b {
                Some(b) => RangeSpec::FromTo {
                    first: a.min(b),
                    last: Some(a.max(b))
                },
                None => RangeSpec::FromTo {
                    first: a,
                    last: None
                },
            }),
            (0u64..400).prop_map(RangeSpec::Suffix),
        ]
    }

    fn spec_string(spec: &RangeSpec) -> String {
        match spec {
            RangeSpec::FromTo {
                first,
                last: Some(last),
            } => format!("{first}-{last}"),
            RangeSpec::FromTo { first, last: None } => format!("{first}-"),
            RangeSpec::Suffix(n) => format!("-{n}"),
        }
    }

    /// The bytes of a `size`-byte representation one spec selects.
    fn selected(spec: &RangeSpec, size: u64) -> std::ops::Range<u64> {
        match *spec {
            RangeSpec::FromTo { first, last } => {
                let end = last.map_or(size, |l| (l + 1).min(size));
                first.min(size)..end.max(first.min(size))
            }
            RangeSpec::Suffix(n) => size.saturating_sub(n)..size,
        }
    }

    proptest! {
        #[test]
        fn never_panics(value in any::<String>(), size in any::<u64>(), max in 0usize..70) {
            let _ = evaluate(&value, size, max);
        }

        #[test]
        fn never_panics_on_range_like_input(value in "[bBytes]{0,6}=?[0-9, -]{0,40}", size in any::<u64>()) {
            let _ = evaluate(&value, size, 64);
        }

        #[test]
        fn huge_numbers_never_panic(a in "[0-9]{15,40}", b in "[0-9]{15,40}", size in any::<u64>()) {
            for value in [format!("bytes={a}-{b}"), format!("bytes={a}-"), format!("bytes=-{a}"), format!("bytes={a}-{b},-{b}")] {
                let _ = evaluate(&value, size, 64);
            }
        }

        #[test]
        fn generated_sets_resolve_to_exactly_their_union(
            specs in prop::collection::vec(arb_spec(), 1..12),
            size in 0u64..300,
            sep in "[ \t]{0,2},[ \t]{0,2}",
        ) {
            let value = format!("bytes={}", specs.iter().map(spec_string).collect::<Vec<_>>().join(&sep));
            prop_assert_eq!(parse(&value, 64), Ok(specs.clone()));
            let wanted: u64 = specs.iter().map(|s| { let r = selected(s, size); r.end - r.start }).sum();
            let mut union = vec![false; size as usize];
            for s in &specs {
                for i in selected(s, size) {
                    union[i as usize] = true;
                }
            }
            match resolve(&specs, size) {
                Resolution::Satisfiable(ranges) => {
                    prop_assert!(!ranges.is_empty());
                    prop_assert!(wanted <= size);
                    for w in ranges.windows(2) {
                        // Ascending, neither overlapping nor touching.
                        prop_assert!(w[0].last + 1 < w[1].first);
                    }
                    let mut covered = vec![false; size as usize];
                    for r in &ranges {
                        prop_assert!(r.first <= r.last && r.last < size);
                        for i in r.first..=r.last {
                            covered[i as usize] = true;
                        }
                    }
                    prop_assert_eq!(covered, union);
                }
                Resolution::Unsatisfiable => prop_assert!(union.iter().all(|b| !b)),
                Resolution::Ignored(why) => {
                    prop_assert_eq!(why, Ignored::Excessive);
                    prop_assert!(wanted > size);
                }
            }
        }

        #[test]
        fn the_cap_counts_specs(n in 1usize..80, max in 0usize..70) {
            let value = format!("bytes={}", (0..n).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(","));
            let result = parse(&value, max);
            prop_assert_eq!(result.is_ok(), n <= max);
        }
    }
}
