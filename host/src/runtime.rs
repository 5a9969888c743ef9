//! The tokio runtime the `sluice` command serves on, built from the
//! configuration: worker threads and the scheduler's three intervals.
//!
//! Why the scheduler is configurable at all: with hundreds of connections
//! ready at once on one worker, the order in which tokio polls their tasks
//! decides the latency tail (BENCHMARKS.md, "The c512 tail"). A worker
//! keeps ready tasks in a local queue of 256; when one look at the kernel's
//! socket events wakes more than that, the rest go to the runtime's shared
//! queue, which a busy worker visits once every `global-queue-interval`
//! polls, while every `event-interval` polls it takes up to 1,024 fresh
//! events again, refilling its local queue first. A connection pushed to the
//! shared queue can so wait many rounds of the others.

use crate::config::Config;

/// The multi-thread runtime for `cfg` (which [`Config::check`] accepted:
/// the intervals are positive, so tokio's builder does not panic).
pub fn build(cfg: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if cfg.workers > 0 {
        runtime.worker_threads(cfg.workers);
    }
    runtime
        .event_interval(cfg.event_interval)
        .max_io_events_per_tick(cfg.io_events);
    if cfg.global_queue_interval > 0 {
        runtime.global_queue_interval(cfg.global_queue_interval);
    }
    if cfg.busy_io_events > 0 {
        runtime.max_io_events_per_busy_tick(cfg.busy_io_events);
    }
    runtime.enable_all().thread_name("sluice-worker").build()
}
