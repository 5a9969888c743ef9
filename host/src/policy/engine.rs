//! The one wasmtime `Engine` every policy runs on, and its epoch clock.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
    // (the program plus the component's shim modules) and a few tables.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .max_memory_size(usize::try_from(settings.memory.0).unwrap_or(usize::MAX))
        // Keep the first pages resident between uses of a slot: measured
        // here, it roughly halves instantiation after a retire.
        .linear_memory_keep_resident(1 << 20);

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

/// The engine plus what deadlines are measured in.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) tick: Duration,
    _ticker: Arc<Ticker>,
}

/// Stops the epoch thread when the last `Sandbox` clone goes.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Sandbox {
    /// Builds the engine: Cranelift, component model, pooling allocator sized
    /// from `settings`, epoch interruption for deadlines, bounded wasm stack.
    pub fn new(settings: &SandboxConfig) -> wasmtime::Result<Sandbox> {
        let engine = Engine::new(&wasmtime_config(settings))?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tick = Duration::from_millis(settings.tick_ms);
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Sandbox {
            engine,
            tick,
            _ticker: Arc::new(Ticker { stop }),
        })
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
    fn deadlines_round_up_to_ticks_plus_one() {
        let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
        assert_eq!(sandbox.ticks(Duration::from_millis(10)), 11);
        assert_eq!(sandbox.ticks(Duration::from_micros(1500)), 3);
        assert_eq!(sandbox.ticks(Duration::MAX), u64::MAX);
    }
}
