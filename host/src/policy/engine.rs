//! The one wasmtime `Engine` every policy runs on, and its epoch clock.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::compiled::{CacheDirError, Components, DiskCache};
use super::idle::Idle;
use crate::config::SandboxConfig;

/// Largest wasm stack: wasm runs on the calling thread's stack (a tokio worker
/// or blocking-pool thread, 2 MiB by default), and wasmtime only checks the
/// wasm part against `max_wasm_stack`. Host frames below the call (hyper,
/// tokio) and above it (wasmtime's trampolines, WASI imports, libcalls) need
/// the rest, so the wasm share is capped at half the thread stack: a runaway
/// recursion then traps with `StackOverflow` long before the guard page.
pub const MAX_WASM_STACK: u64 = 1 << 20;

// Half of tokio's default worker (and blocking-pool) thread stack, 2 MiB.
const _: () = assert!(MAX_WASM_STACK <= (2 << 20) / 2);

fn wasm_stack(configured: u64) -> usize {
    if configured > MAX_WASM_STACK {
        tracing::warn!(
            configured,
            max = MAX_WASM_STACK,
            "sandbox.stack capped to fit the worker thread stacks"
        );
    }
    usize::try_from(configured.min(MAX_WASM_STACK)).unwrap_or(512 << 10)
}

/// The wasmtime configuration every policy runs under: Cranelift, component
/// model without async, pooling allocator sized from `settings`, epoch
/// interruption for deadlines, bounded wasm stack. Public so the benchmarks
/// (`host/benches/policy.rs`) measure exactly this set-up.
pub fn wasmtime_config(settings: &SandboxConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let n = settings.instances;
    // A Rust wasm32-wasip2 component has one memory, a few core instances
    // (the program plus the component's shim modules) and a few tables; a
    // componentize-py one has 14 core instances (measured).
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .max_memory_size(usize::try_from(settings.memory.0).unwrap_or(usize::MAX))
        // Give a retired instance's memory back to the system at once. A
        // slot could keep its first pages resident for the next instance
        // (memset instead of madvise), and once did, 1 MiB: it made a fresh
        // instance a little cheaper, but every slot ever used then held
        // ~900 KiB for good, however idle its tenant, up to 2 GiB over the
        // 2,048 slots; the first request to a cold tenant measured no
        // slower without it (tests/bench/tenants.py, BENCHMARKS.md).
        .linear_memory_keep_resident(0);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Stores carry no component-model-async state: policies are plain
        // synchronous calls (the issue measured ~2.5x per call with it on;
        // it is off already without the `component-model-async` feature,
        // this keeps it off if a dependency turns the feature on).
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(wasm_stack(settings.stack.0))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Most slots the pool is raised to for the number of sites. Each slot
/// reserves address space for two linear memories of about 4 GiB each
/// (wasmtime's default reservation, which lets compiled code skip bounds
/// checks), so 2048 slots reserve about 16 TiB of the 128 TiB a process
/// has. More sites than this covers still load and serve: a site holds
/// instances only while it is called and briefly after (see `idle`), so the
/// slots in use follow the busy sites, not the configured ones, and when
/// every slot is taken a new instance takes the slot of the least recently
/// used idle one, of any site. An explicit `instances` above it is kept.
const MAX_RAISED_SLOTS: u32 = 2048;

/// The pool the policies of `sites` sites run in (each site has instances
/// of its own), from the configured `[sandbox]`: the configured slot count
/// is a floor, raised (up to [`MAX_RAISED_SLOTS`]) so adding tenants cannot
/// starve them into evictions; a slot's memory is the largest any site may
/// use, and at least 64 MiB (address space, not memory), so that a site's
/// own limit, enforced by its stores' limiter, is what refuses a policy too
/// big for it, with a message that names the setting.
pub fn pool_for(configured: &SandboxConfig, sites: u32, largest_memory: u64) -> SandboxConfig {
    let mut pool = *configured;
    let needed = sites
        .saturating_mul(super::slots_per_site())
        .min(MAX_RAISED_SLOTS);
    if needed > pool.instances {
        tracing::info!(
            configured = pool.instances,
            needed,
            "sandbox.instances raised for the number of sites"
        );
        pool.instances = needed;
    }
    pool.memory = crate::config::ByteSize(largest_memory.max(configured.memory.0).max(64 << 20));
    pool
}

/// The engine plus what deadlines are measured in, the components
/// compiled for it, and every site's idle instances.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) tick: Duration,
    clock: Arc<ClockOwner>,
    pub(super) components: Arc<Components>,
    pub(super) idle: Arc<Idle>,
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

impl Sandbox {
    /// Builds the engine: Cranelift, component model, pooling allocator sized
    /// from `settings`, epoch interruption for deadlines, bounded wasm stack.
    pub fn new(settings: &SandboxConfig) -> wasmtime::Result<Sandbox> {
        let engine = Engine::new(&wasmtime_config(settings))?;
        let tick = Duration::from_millis(settings.tick_ms);
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
        Ok(Sandbox {
            engine,
            tick,
            clock: Arc::new(ClockOwner(clock)),
            components: Arc::new(Components::new(None)),
            idle: Arc::new(Idle::new(settings.idle_memory.0)),
        })
    }

    /// Drops the idle instances (of every site) unused for `idle_for`: a
    /// tenant that went quiet gives its pool slots and memory back, and its
    /// next request makes a fresh instance.
    pub fn reclaim_idle(&self, idle_for: Duration) -> usize {
        self.idle.reclaim(idle_for)
    }

    /// Idle instances held, host-wide, and their linear memory in bytes.
    pub fn idle_instances(&self) -> (usize, u64) {
        self.idle.total()
    }

    /// Keeps compiled components in `dir` between starts (see `compiled`).
    /// Call it before loading policies: components compiled earlier are
    /// forgotten.
    pub fn set_compile_cache(&mut self, dir: &Path) -> Result<(), CacheDirError> {
        let disk = DiskCache::open(dir, &self.engine)?;
        self.components = Arc::new(Components::new(Some(disk)));
        Ok(())
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

    #[test]
    fn wasm_stack_is_capped_below_the_worker_stack() {
        assert_eq!(wasm_stack(512 << 10), 512 << 10);
        assert_eq!(wasm_stack(MAX_WASM_STACK), MAX_WASM_STACK as usize);
        assert_eq!(wasm_stack(1 << 30), MAX_WASM_STACK as usize);
    }

    #[test]
    fn the_epoch_clock_parks_when_idle_and_wakes_for_a_call() {
        let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
        let clock = &sandbox.clock.0;
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
        let running = sandbox.running();
        assert!(wait(false), "a call must wake the clock");
        std::thread::sleep(Duration::from_millis(300));
        assert!(!parked(), "the clock must keep ticking while a call runs");
        drop(running);
        assert!(wait(true));
    }

    #[test]
    fn deadlines_round_up_to_ticks_plus_one() {
        let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
        assert_eq!(sandbox.ticks(Duration::from_millis(10)), 11);
        assert_eq!(sandbox.ticks(Duration::from_micros(1500)), 3);
        assert_eq!(sandbox.ticks(Duration::MAX), u64::MAX);
    }
}
