//! The one wasmtime `Engine` every policy runs on and its epoch clock:
//! what a call into wasm runs on, and is timed by.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// The engine plus what deadlines are measured in.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) tick: Duration,
    clock: Arc<ClockOwner>,
}

/// Ticks after the last call before the epoch clock parks.
const IDLE_TICKS: u32 = 10;

/// The epoch clock's shared state. Deadlines only need the epoch to advance
/// while wasm runs, so the clock parks after [`IDLE_TICKS`] ticks without a
/// call: a 1 ms ticker costs ~3% of a core, which an idle server — or one
/// busy sending large files, one policy call per download — need not pay.
struct Clock {
    /// Calls into wasm under way.
    running: AtomicUsize,
    /// A call started since the clock last looked.
    recent: AtomicBool,
    /// The clock thread is parked (or about to park).
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Clock {
    fn run(&self, engine: &Engine, tick: Duration) {
        let mut idle = 0;
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            engine.increment_epoch();
            let busy = self.running.load(Ordering::SeqCst) > 0;
            if busy || self.recent.swap(false, Ordering::Relaxed) {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle >= IDLE_TICKS {
                // Publish `parked` before the last look at `running`; a call
                // does the opposite (count itself, then look at `parked`), so
                // with sequential consistency at least one of the two sees the
                // other: either we stay awake, or the call unparks us (an
                // unpark before the park makes the park return at once).
                self.parked.store(true, Ordering::SeqCst);
                if self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                self.parked.store(false, Ordering::SeqCst);
                idle = 0;
            }
        }
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Marks a call into wasm as under way (the epoch clock keeps ticking).
pub(crate) struct Running<'a>(&'a Clock);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Owned by the `Sandbox` clones; stops the clock thread when the last goes
/// (the thread itself holds the `Clock`, not this).
struct ClockOwner(Arc<Clock>);

impl Drop for ClockOwner {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
        self.0.wake();
    }
}

impl Runtime {
    /// Starts the epoch clock of `engine`, ticking every `tick`.
    pub(super) fn start(engine: Engine, tick: Duration) -> std::io::Result<Runtime> {
        let clock = Arc::new(Clock {
            running: AtomicUsize::new(0),
            recent: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let handle = {
            let clock = clock.clone();
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || clock.run(&engine, tick))?
        };
        let _ = clock.thread.set(handle.thread().clone());
        Ok(Runtime {
            engine,
            tick,
            clock: Arc::new(ClockOwner(clock)),
        })
    }
    /// Counts a call into wasm as under way until the guard drops, waking the
    /// epoch clock if it was parked.
    pub(crate) fn running(&self) -> Running<'_> {
        let clock = &*self.clock.0;
        clock.running.fetch_add(1, Ordering::SeqCst);
        clock.recent.store(true, Ordering::Relaxed);
        if clock.parked.load(Ordering::SeqCst) {
            clock.wake();
        }
        Running(clock)
    }

    /// Epoch ticks for a deadline: rounded up, plus one because the current tick
    /// may be nearly over when a call starts.
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        u64::try_from(deadline.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn runtime() -> Runtime {
        let tick = Duration::from_millis(SandboxConfig::default().tick_ms);
        Runtime::start(Engine::default(), tick).unwrap()
    }

    #[test]
    fn the_epoch_clock_parks_when_idle_and_wakes_for_a_call() {
        let runtime = runtime();
        let clock = &runtime.clock.0;
        let parked = || clock.parked.load(Ordering::SeqCst);
        let wait = |want: bool| {
            (0..500).any(|_| {
                std::thread::sleep(Duration::from_millis(2));
                parked() == want
            })
        };
        assert!(
            wait(true),
            "idle clock should park after {IDLE_TICKS} ticks"
        );
        let running = runtime.running();
        assert!(wait(false), "a call must wake the clock");
        std::thread::sleep(Duration::from_millis(300));
        assert!(!parked(), "the clock must keep ticking while a call runs");
        drop(running);
        assert!(wait(true));
    }

    #[test]
    fn deadlines_round_up_to_ticks_plus_one() {
        let runtime = runtime();
        assert_eq!(runtime.ticks(Duration::from_millis(10)), 11);
        assert_eq!(runtime.ticks(Duration::from_micros(1500)), 3);
        assert_eq!(runtime.ticks(Duration::MAX), u64::MAX);
    }
}
