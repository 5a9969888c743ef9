//! Reading a `decide` result (an `outcome`, or a 0.2.0 `decision`) out of
//! the guest within the host's limits.
//!
//! The generated binding (`Policy::call_decide`) copies every list and string
//! of a decision into host memory before anyone can look at it, and a
//! decision's strings may all point at one buffer: a policy capped at 16 MiB
//! could make the host copy gigabytes, and only then would
//! `decision::validate` find the decision over its limits. Nor can
//! the host take a lazy view ([`wasmtime::component::WasmList`]) and look
//! later: wasmtime runs the guest's post-return function, which frees the
//! result, before `call` returns.
//!
//! So `decide` is called with [`BoundedDecision`] as its result type: the
//! same layout, derived like the generated types, except that each list is
//! measured where it lies in the guest's memory *during* the lift, before
//! it is copied, against the limits the policy was given in `host-limits`:
//! header count and bytes, inline body size, range count. A list over its
//! limit is not copied: the lift records the [`DecisionError`] of the limit
//! it breaks in place of the list, and goes on. Refusing by failing the
//! lift instead would end the call before wasmtime runs the guest's
//! post-return, which frees the result: the guest would keep that memory
//! (and a runtime such as ComponentizeJS traps on its next call, finding
//! the previous one unfinished) and the host ~33 bytes per refusal. So the
//! call completes as any call does, and only then is the decision reported
//! invalid. Everything else is checked after the copy, by
//! `decision::validate`, as for any decision.
//!
//! Measuring reads only the list's pointer and length, and for headers each
//! element's two string pointer pairs, as the canonical ABI lays them out
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md>,
//! "Flattening" and "Loading": a `list` or `string` is an `(i32 ptr, i32 len)`
//! pair); wasmtime's own lift then bounds-checks and copies as usual.

use std::marker::PhantomData;

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Func, Lift, TypedFunc};
use wasmtime::{Store, ValRaw};

use super::store::HostState;
use super::v0_2 as adapt;
use crate::contract::{
    wit, DecisionError, MAX_HEADERS, MAX_HEADER_BYTES, MAX_INLINE, MAX_RANGES, MAX_REASON,
};

/// `outcome` (0.3.0), its decision or its rewrite's reason measured before
/// the copy. (A rewrite's path is copied within the host-copy allowance, as
/// any string a policy returns; it is checked after, like a request path.)
#[derive(ComponentType, Lift)]
#[component(variant)]
enum BoundedOutcome {
    #[component(name = "respond")]
    Respond(BoundedDecision),
    #[component(name = "rewrite")]
    Rewrite(BoundedRewrite),
}

/// `rewrite`, its reason measured before the copy.
#[derive(ComponentType, Lift)]
#[component(record)]
struct BoundedRewrite {
    path: String,
    reason: Measured<String, ReasonLimit>,
}

impl BoundedOutcome {
    fn checked(self) -> Result<wit::Outcome, DecisionError> {
        Ok(match self {
            BoundedOutcome::Respond(d) => wit::Outcome::Respond(d.checked()?),
            BoundedOutcome::Rewrite(r) => wit::Outcome::Rewrite(wit::Rewrite {
                path: r.path,
                reason: r.reason.list?,
            }),
        })
    }
}

/// `decision`, lifted list by list within the host's limits.
#[derive(ComponentType, Lift)]
#[component(record)]
struct BoundedDecision {
    status: u16,
    headers: Measured<Vec<wit::Header>, HeaderLimits>,
    body: BoundedBody,
}

/// `body`, with its inline bytes and range list measured before the copy.
/// (A `full-body` has no lists.)
#[derive(ComponentType, Lift)]
#[component(variant)]
enum BoundedBody {
    #[component(name = "empty")]
    Empty,
    #[component(name = "inline")]
    Inline(Measured<Vec<u8>, InlineLimit>),
    #[component(name = "full")]
    Full(wit::FullBody),
    #[component(name = "ranges")]
    Ranges(BoundedRanged),
}

/// `ranged-body`, its range list measured before the copy.
#[derive(ComponentType, Lift)]
#[component(record)]
struct BoundedRanged {
    source: wit::Source,
    ranges: Measured<Vec<wit::ByteRange>, RangeLimit>,
}

impl BoundedDecision {
    /// The decision, or the limit one of its lists is over.
    fn checked(self) -> Result<wit::Decision, DecisionError> {
        Ok(wit::Decision {
            status: self.status,
            headers: self.headers.list?,
            body: match self.body {
                BoundedBody::Empty => wit::Body::Empty,
                BoundedBody::Inline(bytes) => wit::Body::Inline(bytes.list?),
                BoundedBody::Full(full) => wit::Body::Full(full),
                BoundedBody::Ranges(r) => wit::Body::Ranges(wit::RangedBody {
                    source: r.source,
                    ranges: r.ranges.list?,
                }),
            },
        })
    }
}

/// A limit on one list of a decision, checked in the guest's memory.
trait Limit {
    /// `memory` is the guest's whole linear memory; the list's elements
    /// start at `ptr` (not yet bounds-checked: wasmtime's lift does that).
    fn check(memory: &[u8], ptr: usize, len: usize) -> Result<(), DecisionError>;
}

/// `host-limits.max-headers` and `max-header-bytes`.
struct HeaderLimits;
/// `host-limits.max-inline`.
struct InlineLimit;
/// `host-limits.max-ranges`.
struct RangeLimit;
/// A rewrite's reason: at most `MAX_REASON` bytes.
struct ReasonLimit;

/// A `header` record: two `string` pointer pairs, 4-byte aligned.
const HEADER_SIZE: usize = 16;
const _: () = assert!(<wit::Header as ComponentType>::SIZE32 == HEADER_SIZE);

impl Limit for HeaderLimits {
    fn check(memory: &[u8], ptr: usize, len: usize) -> Result<(), DecisionError> {
        if len > MAX_HEADERS {
            return Err(DecisionError::TooManyHeaders);
        }
        let Some(records) = len
            .checked_mul(HEADER_SIZE)
            .and_then(|size| memory.get(ptr..ptr.checked_add(size)?))
        else {
            return Ok(()); // out of bounds: the lift reports it
        };
        let u32_at = |r: &[u8], at: usize| {
            u32::from_le_bytes(r[at..at + 4].try_into().expect("4 bytes")) as usize
        };
        // A length's top bit tags UTF-16 in the "latin1+utf16" encoding;
        // masking it keeps the count an upper bound in code units.
        let units = |r: &[u8], at: usize| u32_at(r, at) & 0x7fff_ffff;
        let mut bytes = 0usize;
        for r in records.chunks_exact(HEADER_SIZE) {
            bytes = bytes
                .saturating_add(units(r, 4))
                .saturating_add(units(r, 12));
        }
        if bytes > MAX_HEADER_BYTES {
            return Err(DecisionError::TooManyHeaders);
        }
        Ok(())
    }
}

impl Limit for InlineLimit {
    fn check(_: &[u8], _: usize, len: usize) -> Result<(), DecisionError> {
        if len > MAX_INLINE {
            return Err(DecisionError::InlineTooLarge);
        }
        Ok(())
    }
}

impl Limit for RangeLimit {
    fn check(_: &[u8], _: usize, len: usize) -> Result<(), DecisionError> {
        if len > MAX_RANGES {
            return Err(DecisionError::RangeCount);
        }
        Ok(())
    }
}

impl Limit for ReasonLimit {
    fn check(_: &[u8], _: usize, len: usize) -> Result<(), DecisionError> {
        // A string's length counts code units; the top bit tags UTF-16 in
        // the "latin1+utf16" encoding. Masked, it is at most the bytes.
        if len & 0x7fff_ffff > MAX_REASON {
            return Err(DecisionError::RewriteReason);
        }
        Ok(())
    }
}

/// A `list<T>` (`C` = `Vec<T>`) or a `string` (`C` = `String`) that is
/// copied only if `L` accepts it where it lies; else the limit it is over.
struct Measured<C, L> {
    list: Result<C, DecisionError>,
    _limit: PhantomData<fn() -> L>,
}

impl<C: Lift, L: Limit> Measured<C, L> {
    fn lift(
        cx: &mut LiftContext<'_>,
        (ptr, len): (u32, u32),
        copy: impl FnOnce(&mut LiftContext<'_>) -> wasmtime::Result<C>,
    ) -> wasmtime::Result<Self> {
        let list = match L::check(cx.memory(), ptr as usize, len as usize) {
            Ok(()) => Ok(copy(cx)?),
            // Not copied, and not an error of the lift (see the module
            // comment): the call goes on to its post-return.
            Err(over) => Err(over),
        };
        Ok(Measured {
            list,
            _limit: PhantomData,
        })
    }
}

// SAFETY: the ABI, lowered form and type check are exactly `C`'s (a list
// or a string: an `(i32 ptr, i32 len)` pair), and lifting delegates to
// `C`'s after reading the same pointer pair.
unsafe impl<C: ComponentType<Lower = [ValRaw; 2]>, L: Limit> ComponentType for Measured<C, L> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = C::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        C::typecheck(ty, types)
    }
}

unsafe impl<C: Lift + ComponentType<Lower = [ValRaw; 2]>, L: Limit> Lift for Measured<C, L> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let pair = (src[0].get_u32(), src[1].get_u32());
        Self::lift(cx, pair, |cx| C::linear_lift_from_flat(cx, ty, src))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        Self::lift(cx, (word(0), word(4)), |cx| {
            C::linear_lift_from_memory(cx, ty, bytes)
        })
    }
}

type Args<'a> = (&'a wit::Request, &'a wit::Entry);
type Args02<'a> = (&'a adapt::Request, &'a adapt::Entry);

/// The `decide` export, typechecked once against [`BoundedOutcome`] (0.3.0)
/// or [`BoundedDecision`] (0.2.0, whose decision has the same layout).
#[derive(Clone, Copy)]
pub(super) enum Decide {
    V0_3(Func),
    V0_2(Func),
}

impl Decide {
    /// Looks up `decide` in a fresh instance and checks that its signature
    /// is the one read here (wasmtime compares the component's types with
    /// these, field by field and case by case).
    pub(super) fn new(
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
        version: &str,
    ) -> wasmtime::Result<Decide> {
        let func = instance
            .get_func(&mut *store, "decide")
            .ok_or_else(|| wasmtime::Error::msg("no `decide` export"))?;
        if version == "0.2.0" {
            func.typed::<Args02<'_>, (BoundedDecision,)>(&*store)?;
            Ok(Decide::V0_2(func))
        } else {
            func.typed::<Args<'_>, (BoundedOutcome,)>(&*store)?;
            Ok(Decide::V0_3(func))
        }
    }

    /// Calls `decide`. The call completes (post-return included) whatever
    /// the outcome; one over a limit comes back as the [`DecisionError`]
    /// of the limit, uncopied. A 0.2.0 decision is the response
    /// (`respond`).
    pub(super) fn call(
        self,
        store: &mut Store<HostState>,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> wasmtime::Result<Result<wit::Outcome, DecisionError>> {
        // SAFETY (both arms): `new_unchecked` only skips the type check, and
        // `Decide::new` ran exactly this one on this same function (as the
        // generated bindings do: check at load, `new_unchecked` per call).
        match self {
            Decide::V0_3(func) => {
                let typed =
                    unsafe { TypedFunc::<Args<'_>, (BoundedOutcome,)>::new_unchecked(func) };
                typed
                    .call(store, (req, entry))
                    .map(|(outcome,)| outcome.checked())
            }
            Decide::V0_2(func) => {
                let (req, entry) = (adapt::request(req), adapt::entry(entry));
                let typed =
                    unsafe { TypedFunc::<Args02<'_>, (BoundedDecision,)>::new_unchecked(func) };
                typed
                    .call(store, (&req, &entry))
                    .map(|(decision,)| decision.checked().map(wit::Outcome::Respond))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory holding `n` header records at offset 0, each naming
    /// strings of `name` and `value` bytes (the strings themselves need not
    /// exist: only the lengths are read).
    fn headers(n: usize, name: u32, value: u32) -> Vec<u8> {
        let mut memory = Vec::new();
        for _ in 0..n {
            for word in [0, name, 0, value] {
                memory.extend_from_slice(&word.to_le_bytes());
            }
        }
        memory
    }

    #[test]
    fn lists_are_measured_against_the_host_limits() {
        let bytes = MAX_HEADER_BYTES as u32;
        let ok = |memory: &[u8], len| HeaderLimits::check(memory, 0, len);
        assert_eq!(ok(&headers(MAX_HEADERS, 1, 1), MAX_HEADERS), Ok(()));
        assert_eq!(
            ok(&headers(MAX_HEADERS + 1, 1, 1), MAX_HEADERS + 1),
            Err(DecisionError::TooManyHeaders)
        );
        assert_eq!(ok(&headers(2, bytes / 4, bytes / 4), 2), Ok(()));
        assert_eq!(
            ok(&headers(2, bytes / 4, bytes / 4 + 1), 2),
            Err(DecisionError::TooManyHeaders)
        );
        // Every value the same huge string: measured, not copied.
        assert_eq!(
            ok(&headers(8, 1, 1 << 20), 8),
            Err(DecisionError::TooManyHeaders)
        );
        // Lengths that would wrap a 32-bit sum still count as over.
        assert_eq!(
            ok(&headers(4, u32::MAX, u32::MAX), 4),
            Err(DecisionError::TooManyHeaders)
        );
        // Records outside memory are left to wasmtime's own bounds check.
        assert_eq!(HeaderLimits::check(&headers(1, 1, 1), 8, 1), Ok(()));

        assert_eq!(InlineLimit::check(&[], 0, MAX_INLINE), Ok(()));
        assert_eq!(
            InlineLimit::check(&[], 0, MAX_INLINE + 1),
            Err(DecisionError::InlineTooLarge)
        );
        assert_eq!(RangeLimit::check(&[], 0, MAX_RANGES), Ok(()));
        assert_eq!(
            RangeLimit::check(&[], 0, MAX_RANGES + 1),
            Err(DecisionError::RangeCount)
        );
        assert_eq!(ReasonLimit::check(&[], 0, MAX_REASON), Ok(()));
        assert_eq!(
            ReasonLimit::check(&[], 0, MAX_REASON + 1),
            Err(DecisionError::RewriteReason)
        );
        // Tagged UTF-16: the count of code units is what is compared.
        assert_eq!(ReasonLimit::check(&[], 0, 0x8000_0000 | 10), Ok(()));
    }
}
