//! The one wasmtime `Engine` every policy runs on, and its epoch clock.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::SandboxConfig;

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
            .epoch_interruption(true)
            .max_wasm_stack(usize::try_from(settings.stack.0).unwrap_or(512 << 10))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tick = Duration::from_millis(settings.tick_ms);
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new().name("sluice-epoch".into()).spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        }
        Ok(Sandbox { engine, tick, _ticker: Arc::new(Ticker { stop }) })
    }

    /// Epoch ticks for a deadline: rounded up, plus one because the current tick
    /// may be nearly over when a call starts.
    pub(crate) fn ticks(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        u64::try_from(deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).saturating_add(1)
    }
}
