//! A directory listing, read off the async workers.
//!
//! Reading a listing is blocking work: up to `MAX_SCAN` (262,144) entries
//! of `getdents64`, then up to `MAX_LISTING` (10,000) opens and `fstat`s
//! beneath the root (`resolve::listing`): tens of milliseconds for a huge
//! directory, more on a cold disk. On an async worker it would stall every
//! connection queued there, so it runs on tokio's blocking pool.
//!
//! **Why that pool stays bounded.** The blocking pool starts a thread per
//! task it cannot hand to an idle one, up to `max_blocking_threads` (512),
//! and queues the rest; nothing in it bounds how many tasks one kind of
//! request may queue. Here the host-wide turn does: a listing's task is
//! spawned only after its request has taken one of the `LISTINGS_AT_ONCE`
//! (8) permits, and the permit moves into the task, comes back with the
//! listing, and is released only when the listing has been dropped (after
//! the policy has answered). So at most 8 listing tasks are on the pool at
//! any time, whatever the number of clients, streams and sites; a request
//! waiting for a turn holds no thread and no memory but its place in the
//! semaphore's queue.
//!
//! **A client that goes away** (connection closed, stream reset) drops the
//! request's future. A blocking task cannot be cancelled from outside, so
//! the future's guard marks the read `abandoned`; the read looks at the
//! mark every 1,024 entries and before each open, and ends within about a
//! millisecond, dropping what it read and releasing the permit it owns.
//! The permit is never leaked: it always has exactly one owner (the
//! request until the task starts, then the task, then the request again),
//! and is released when that owner is dropped.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::app::{App, Site};
use crate::contract::wit;
use crate::resolve::{NoDescriptors, NormalPath};

/// A listing read, with the host-wide turn it holds until dropped.
pub struct Held {
    /// `None` when the path is no longer a readable directory.
    pub listing: Option<wit::Listing>,
    _turn: Option<OwnedSemaphorePermit>,
}

/// Why a listing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error(transparent)]
    NoDescriptors(#[from] NoDescriptors),
    /// The blocking task panicked, or the runtime is shutting down.
    #[error("the listing's task ended without it: {0}")]
    Lost(#[from] tokio::task::JoinError),
}

/// Reads the listing of the directory at `at` (at most `max` entries) on
/// the blocking pool, once a host-wide turn is free.
pub async fn read(app: &App, site: &Site, at: &NormalPath, max: u32) -> Result<Held, Failed> {
    // The semaphore is never closed; were it, the listing would go ahead
    // without a turn rather than fail.
    let turn = app.listings.clone().acquire_owned().await.ok();
    let root = site.root.clone();
    let relative = at.relative().to_owned();
    let abandoned = Arc::new(AtomicBool::new(false));
    let guard = AbandonOnDrop(abandoned.clone());
    let task = tokio::task::spawn_blocking(move || {
        let listing = root.listing(&relative, max, &abandoned);
        (listing, turn)
    });
    let (listing, turn) = task.await?;
    drop(guard);
    Ok(Held {
        listing: listing?,
        _turn: turn,
    })
}

/// Marks the read abandoned when the request's future is dropped before
/// the read has ended.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}
