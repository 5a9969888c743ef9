//! One store + instance of a policy, and its limits.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, types as wit};
use super::engine::Sandbox;
use crate::config::SandboxLimits;

/// Per-store host state: an empty WASI context and the resource limiter.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl HostState {
    /// The WASI resource table (streams, pollables), for the shadowed imports.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// Most WASI resources (streams, pollables) one instance may hold at once. A
/// policy needs none or a couple (stdout for a debug line); without a cap, an
/// instance reused across requests could grow the host-side table by a million
/// entries.
const MAX_RESOURCES: usize = 64;

/// Largest `wasi:random` request: its bytes are allocated on the host before
/// being copied into the guest (wasmtime-wasi's default is 64 MiB).
const MAX_RANDOM: u64 = 4096;

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A configured instance ready for `decide`.
pub struct Warm {
    store: Store<HostState>,
    bindings: bindings::Policy,
}

impl Warm {
    pub fn new(
        sandbox: &Sandbox,
        pre: &bindings::PolicyPre<HostState>,
        limits: SandboxLimits,
    ) -> wasmtime::Result<Warm> {
        let state = HostState {
            // No preopens, no environment, no arguments, no network: std's WASI
            // imports resolve, but grant nothing.
            wasi: WasiCtx::builder().max_random_size(MAX_RANDOM).build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.memory).unwrap_or(usize::MAX))
                .instances(32)
                .tables(32)
                .memories(4)
                .table_elements(100_000)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(sandbox.ticks(limits.deadline));
        let bindings = pre.instantiate(&mut store)?;
        Ok(Warm { store, bindings })
    }

    /// Sets the deadline for the next call.
    pub fn arm(&mut self, sandbox: &Sandbox, deadline: Duration) {
        self.store.set_epoch_deadline(sandbox.ticks(deadline));
    }

    pub fn configure(
        &mut self,
        settings: &[wit::Setting],
    ) -> wasmtime::Result<Result<wit::Capabilities, String>> {
        self.bindings.call_configure(&mut self.store, settings)
    }

    pub fn decide(
        &mut self,
        req: &wit::Request,
        entry: &wit::Entry,
    ) -> wasmtime::Result<wit::Decision> {
        self.bindings.call_decide(&mut self.store, req, entry)
    }
}
