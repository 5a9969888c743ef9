//! The host-wide budget for response-body bytes held in user space.
//!
//! Every limit a connection has on its own (two chunks per body, 128 streams
//! per HTTP/2 connection, `max-connections`) multiplies with the others: at
//! the defaults, 10,000 connections of 128 streams could each hold two
//! 256 KiB chunks. So every body byte the host holds in its own memory — a
//! chunk read on the copying path (HTTP/1 over TLS, HTTP/2, a policy that
//! disallows `sendfile`), a small file read whole to leave with its head, the
//! state of an on-the-fly encoder — is first *charged* to one budget for the
//! whole process (`[limits] body-memory`), and given back when the bytes are
//! dropped (written to the socket, or the response abandoned). A body that
//! finds the budget spent waits for bytes to come back, in arrival order
//! (a fair semaphore), holding nothing meanwhile; the zero-copy path holds
//! no body bytes and is never charged.
//!
//! Waits are bounded because every holder makes progress or is cut: a chunk
//! is held until its connection writes it, and a connection (HTTP/1) or an
//! HTTP/2 stream that writes nothing for `send-timeout-ms` is closed (see
//! `crate::timeouts` and `crate::http2`). HTTP/2 streams also read a chunk
//! only when their flow-control window can take it, so a client that opens
//! streams and grants no window holds no budget at all.
//!
//! What is not charged, and is bounded per connection instead (see the
//! README's "Memory" section): hyper's and h2's own read and write buffers,
//! rustls's record buffers, and the request heads.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

/// The budget: bytes of response bodies the process may hold at once — or
/// one connection's share of it ([`BodyBudget::share`]), so that a few
/// clients cannot take it all.
#[derive(Debug)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
    bytes: usize,
    /// The budget this one is a share of: every charge counts against both.
    whole: Option<Arc<BodyBudget>>,
    /// Of a whole budget, the part encoders' state may take (half): a body
    /// holds its encoder's charge while it waits for its chunks' charges,
    /// so encoders must never be able to take it all.
    encoders: Arc<Semaphore>,
}

/// Bytes charged to a budget (and to the whole it is a share of), given
/// back when dropped.
#[derive(Debug)]
pub struct Charge {
    _own: OwnedSemaphorePermit,
    _whole: Option<OwnedSemaphorePermit>,
}

/// Largest single charge: one chunk (`chunk-max` is at most 8 MiB) or one
/// encoder's state. Charges are clamped to the budget itself, so a budget
/// smaller than a chunk still lets one chunk through at a time rather than
/// none ever.
const MAX_CHARGE: usize = u32::MAX as usize;

impl BodyBudget {
    /// A budget of `bytes` (at least 64 KiB).
    pub fn new(bytes: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::sized(bytes, None))
    }

    fn sized(bytes: u64, whole: Option<Arc<BodyBudget>>) -> BodyBudget {
        let bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(64 << 10, Semaphore::MAX_PERMITS);
        BodyBudget {
            semaphore: Arc::new(Semaphore::new(bytes)),
            bytes,
            whole,
            encoders: Arc::new(Semaphore::new(bytes / 2)),
        }
    }

    /// A share of this budget of at most `bytes` (one connection's): a
    /// charge to it counts against both, so one client's connection holds
    /// at most its share, and all of them together at most the whole.
    pub fn share(self: &Arc<Self>, bytes: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::sized(
            bytes.min(self.bytes as u64),
            Some(self.clone()),
        ))
    }

    /// The budget's size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes charged now.
    pub fn in_use(&self) -> usize {
        self.bytes - self.semaphore.available_permits()
    }

    fn permits(&self, n: usize) -> u32 {
        // Clamped to what the budget holds, or a charge larger than the
        // whole budget would wait forever.
        u32::try_from(n.clamp(1, self.bytes.min(MAX_CHARGE))).expect("clamped to u32")
    }

    /// Charges `n` bytes if the budget (and the whole it is a share of)
    /// has them now.
    pub fn try_charge(&self, n: usize) -> Option<Charge> {
        let own = self
            .semaphore
            .clone()
            .try_acquire_many_owned(self.permits(n))
            .ok()?;
        let whole = match &self.whole {
            None => None,
            Some(whole) => Some(
                whole
                    .semaphore
                    .clone()
                    .try_acquire_many_owned(whole.permits(n))
                    .ok()?,
            ),
        };
        Some(Charge {
            _own: own,
            _whole: whole,
        })
    }

    /// A handle for charging from a `poll` function (a body's).
    pub fn waiter(self: &Arc<Self>) -> Waiter {
        Waiter {
            budget: self.clone(),
            own: PollSemaphore::new(self.semaphore.clone()),
            whole: self
                .whole
                .as_ref()
                .map(|w| PollSemaphore::new(w.semaphore.clone())),
            held: None,
            encoders: None,
            held_encoder: None,
        }
    }
}

/// Charges a budget from a `poll` function, waiting in turn when it is spent.
pub struct Waiter {
    budget: Arc<BodyBudget>,
    own: PollSemaphore,
    whole: Option<PollSemaphore>,
    /// The share's bytes, taken while the whole's are waited for.
    held: Option<(usize, OwnedSemaphorePermit)>,
    /// Charging an encoder: the encoders' part, and what it holds while the
    /// whole's bytes are waited for.
    encoders: Option<PollSemaphore>,
    held_encoder: Option<OwnedSemaphorePermit>,
}

fn acquired(
    poll: &mut PollSemaphore,
    cx: &mut Context<'_>,
    permits: u32,
) -> Poll<OwnedSemaphorePermit> {
    match poll.poll_acquire_many(cx, permits) {
        Poll::Ready(Some(permit)) => Poll::Ready(permit),
        Poll::Ready(None) => unreachable!("the body budget is never closed"),
        Poll::Pending => {
            crate::stats::add(&crate::stats::get().body_budget_waits, 1);
            Poll::Pending
        }
    }
}

impl Waiter {
    /// Charges `n` bytes, or registers for a wake-up when they are back.
    /// The request keeps its place in the queue only while it is polled
    /// with the same `n`.
    pub fn poll_charge(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<Charge> {
        let own = match self.held.take() {
            Some((m, permit)) if m == n => permit,
            _ => ready!(acquired(&mut self.own, cx, self.budget.permits(n))),
        };
        let whole = match (&mut self.whole, &self.budget.whole) {
            (Some(poll), Some(whole)) => match acquired(poll, cx, whole.permits(n)) {
                Poll::Ready(permit) => Some(permit),
                Poll::Pending => {
                    self.held = Some((n, own));
                    return Poll::Pending;
                }
            },
            _ => None,
        };
        Poll::Ready(Charge {
            _own: own,
            _whole: whole,
        })
    }

    /// Charges `n` bytes if the budget has them now.
    pub fn try_charge(&self, n: usize) -> Option<Charge> {
        self.budget.try_charge(n)
    }

    /// Charges an encoder's state, `n` bytes, to the whole budget's part
    /// for encoders (half of it) and to the whole, not to the share this
    /// waiter draws on: a share is sized for chunks in flight, and a body
    /// holds its encoder's charge while it waits for its chunks' — were
    /// encoders able to take a whole budget (or share), bodies holding them
    /// would wait on each other forever.
    pub fn poll_charge_encoder(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<Charge> {
        let whole = self.budget.whole.as_ref().unwrap_or(&self.budget).clone();
        let encoders = self
            .encoders
            .get_or_insert_with(|| PollSemaphore::new(whole.encoders.clone()));
        let own = match self.held_encoder.take() {
            Some(permit) => permit,
            None => {
                let permits = u32::try_from(n.clamp(1, (whole.bytes / 2).min(MAX_CHARGE)))
                    .expect("clamped to u32");
                ready!(acquired(encoders, cx, permits))
            }
        };
        let poll = match &mut self.whole {
            Some(poll) => poll,
            None => &mut self.own,
        };
        match acquired(poll, cx, whole.permits(n)) {
            Poll::Ready(permit) => Poll::Ready(Charge {
                _own: own,
                _whole: Some(permit),
            }),
            Poll::Pending => {
                self.held_encoder = Some(own);
                Poll::Pending
            }
        }
    }
}

/// A buffer that holds its charge: the bytes go back to the budget when the
/// last `Bytes` made from it is dropped.
pub struct Charged<T> {
    pub bytes: T,
    pub charge: Option<Charge>,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Charged<T> {
    fn as_ref(&self) -> &[u8] {
        self.bytes.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn charges_come_back_when_dropped() {
        let budget = BodyBudget::new(1 << 20);
        assert_eq!(budget.bytes(), 1 << 20);
        let a = budget.try_charge(600 << 10).unwrap();
        assert_eq!(budget.in_use(), 600 << 10);
        assert!(budget.try_charge(600 << 10).is_none(), "over the budget");
        drop(a);
        assert_eq!(budget.in_use(), 0);
        assert!(budget.try_charge(600 << 10).is_some());
    }

    #[test]
    fn a_charge_larger_than_the_budget_takes_all_of_it_instead_of_waiting_forever() {
        let budget = BodyBudget::new(64 << 10);
        let all = budget.try_charge(8 << 20).unwrap();
        assert_eq!(budget.in_use(), 64 << 10);
        assert!(budget.try_charge(1).is_none());
        drop(all);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_share_holds_at_most_its_bytes_and_counts_against_the_whole() {
        let whole = BodyBudget::new(1 << 20);
        let a = whole.share(256 << 10);
        let b = whole.share(900 << 10);
        let one = a.try_charge(200 << 10).unwrap();
        assert!(a.try_charge(100 << 10).is_none(), "over its share");
        assert_eq!(whole.in_use(), 200 << 10);
        let two = b.try_charge(800 << 10).unwrap();
        assert!(
            b.try_charge(90 << 10).is_none(),
            "over the whole (24 KiB left)"
        );
        assert_eq!(
            (a.in_use(), b.in_use(), whole.in_use()),
            (200 << 10, 800 << 10, 1000 << 10)
        );
        drop((one, two));
        assert_eq!(whole.in_use(), 0);
    }

    #[tokio::test]
    async fn a_share_waits_for_the_whole_holding_only_its_own_bytes() {
        let whole = BodyBudget::new(128 << 10);
        let share = whole.share(128 << 10);
        let other = whole.try_charge(100 << 10).unwrap();
        let mut waiter = share.waiter();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(waiter.poll_charge(&mut cx, 64 << 10).is_pending());
        assert_eq!(share.in_use(), 64 << 10, "its own bytes are kept meanwhile");
        drop(other);
        let charge = std::future::poll_fn(|cx| waiter.poll_charge(cx, 64 << 10)).await;
        assert_eq!(whole.in_use(), 64 << 10);
        drop(charge);
        assert_eq!((share.in_use(), whole.in_use()), (0, 0));
    }

    #[tokio::test]
    async fn encoders_take_at_most_half_and_never_a_share() {
        let whole = BodyBudget::new(1 << 20);
        let share = whole.share(256 << 10);
        let mut waiter = share.waiter();
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(encoder) = waiter.poll_charge_encoder(&mut cx, 400 << 10) else {
            panic!("room for it");
        };
        assert_eq!((share.in_use(), whole.in_use()), (0, 400 << 10));
        // A second encoder finds the encoders' half spent; chunks still fit.
        let mut other = share.waiter();
        assert!(other.poll_charge_encoder(&mut cx, 400 << 10).is_pending());
        assert!(share.try_charge(256 << 10).is_some());
        drop(encoder);
        assert!(other.poll_charge_encoder(&mut cx, 400 << 10).is_ready());
    }

    #[tokio::test]
    async fn a_waiter_is_woken_when_bytes_come_back_in_turn() {
        let budget = BodyBudget::new(100 << 10);
        let held = budget.try_charge(100 << 10).unwrap();
        let mut first = budget.waiter();
        let mut second = budget.waiter();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(first.poll_charge(&mut cx, 60 << 10).is_pending());
        assert!(second.poll_charge(&mut cx, 10 << 10).is_pending());
        drop(held);
        // First come, first served: the second, smaller charge waits behind.
        let a = std::future::poll_fn(|cx| first.poll_charge(cx, 60 << 10)).await;
        let b = std::future::poll_fn(|cx| second.poll_charge(cx, 10 << 10)).await;
        assert_eq!(budget.in_use(), 70 << 10);
        drop((a, b));
        assert_eq!(budget.in_use(), 0);
    }
}
