//! Reading a `decide` result out of the guest within the host's limits.
//!
//! The generated binding (`Policy::call_decide`) copies every list and string
//! of a decision into host memory before anyone can look at it, and a
//! decision's strings may all point at one buffer: a policy capped at 16 MiB
//! could make the host copy gigabytes, and only then would
//! [`crate::decision::validate`] find the decision over its limits. Nor can
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

use super::instance::HostState;
use super::wit;
use crate::decision::{DecisionError, MAX_HEADERS, MAX_HEADER_BYTES, MAX_INLINE, MAX_RANGES};

/// `decision`, lifted list by list within the host's limits.
#[derive(ComponentType, Lift)]
#[component(record)]
struct BoundedDecision {
    status: u16,
    headers: Measured<wit::Header, HeaderLimits>,
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
    Inline(Measured<u8, InlineLimit>),
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
    ranges: Measured<wit::ByteRange, RangeLimit>,
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

/// A `list<T>` that is copied only if `L` accepts it where it lies; else
/// the limit it is over.
struct Measured<T, L> {
    list: Result<Vec<T>, DecisionError>,
    _limit: PhantomData<fn() -> L>,
}

impl<T: Lift, L: Limit> Measured<T, L> {
    fn lift(
        cx: &mut LiftContext<'_>,
        (ptr, len): (u32, u32),
        copy: impl FnOnce(&mut LiftContext<'_>) -> wasmtime::Result<Vec<T>>,
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

// SAFETY: the ABI, lowered form and type check are exactly `Vec<T>`'s, and
// lifting delegates to `Vec<T>`'s after reading the same pointer pair.
unsafe impl<T: ComponentType, L: Limit> ComponentType for Measured<T, L> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = <Vec<T> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<T> as ComponentType>::typecheck(ty, types)
    }
}

unsafe impl<T: Lift, L: Limit> Lift for Measured<T, L> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let pair = (src[0].get_u32(), src[1].get_u32());
        Self::lift(cx, pair, |cx| Vec::<T>::linear_lift_from_flat(cx, ty, src))
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        Self::lift(cx, (word(0), word(4)), |cx| {
            Vec::<T>::linear_lift_from_memory(cx, ty, bytes)
        })
    }
}

/// The `decide` export, typechecked once against [`BoundedDecision`].
#[derive(Clone, Copy)]
pub(super) struct Decide(Func);

impl Decide {
    /// Looks up `decide` in a fresh instance and checks that its signature
    /// is the one read here (wasmtime compares the component's types with
    /// these, field by field and case by case).
    pub(super) fn new(
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Decide> {
        let func = instance
            .get_func(&mut *store, "decide")
            .ok_or_else(|| wasmtime::Error::msg("no `decide` export"))?;
        func.typed::<(&wit::Request, &wit::Entry), (BoundedDecision,)>(&*store)?;
        Ok(Decide(func))
    }

    /// Calls `decide`. The call completes (post-return included) whatever
    /// the decision; one over a limit comes back as the [`DecisionError`]
    /// of the limit, uncopied.
    pub(super) fn call(
        self,
        store: &mut Store<HostState>,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> wasmtime::Result<Result<wit::Decision, DecisionError>> {
        // SAFETY: `new_unchecked` only skips the type check, and
        // `Decide::new` ran exactly this one on this same function (as the
        // generated bindings do: check at load, `new_unchecked` per call).
        let typed = unsafe {
            TypedFunc::<(&wit::Request, &wit::Entry), (BoundedDecision,)>::new_unchecked(self.0)
        };
        typed
            .call(store, (req, entry))
            .map(|(decision,)| decision.checked())
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
    }
}
