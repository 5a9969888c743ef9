//! `Range` parsing and resolution: never panics, and every satisfiable answer
//! is what the host accepts (ascending, disjoint, non-adjacent, in bounds, no
//! more ranges than allowed) and no larger than the representation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_guest::range::{self, Ignored, Resolution};

fuzz_target!(|input: (u64, u8, &str)| {
    let (size, max, value) = input;
    // Both small sizes (where ranges overlap the end) and huge ones matter.
    let size = if max & 0x80 != 0 { size } else { size % 4096 };
    let max = usize::from(max % 65);
    match range::evaluate(value, size, max) {
        Resolution::Satisfiable(ranges) => {
            assert!(!ranges.is_empty() && ranges.len() <= max);
            let mut total: u128 = 0;
            for r in &ranges {
                assert!(r.first <= r.last && r.last < size);
                total += u128::from(r.last - r.first) + 1;
            }
            for w in ranges.windows(2) {
                assert!(u128::from(w[0].last) + 1 < u128::from(w[1].first));
            }
            assert!(total <= u128::from(size));
        }
        // Too many specs can only be reported when there are more than `max`.
        Resolution::Ignored(Ignored::TooMany) => assert!(value.matches('-').count() > max),
        Resolution::Unsatisfiable | Resolution::Ignored(_) => {}
    }
});
