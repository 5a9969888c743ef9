//! One store + instance of a policy, its limits, and the typed faults a call
//! can end in.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bounded::{self, Decide};
use super::engine::Sandbox;
use super::wit::{self, v0_1, v0_2};
use super::{v0_1 as adapt, CallError, Transport};
use crate::config::SandboxLimits;

/// Per-store host state: an empty WASI context, the resource limiter and
/// the running call's time budget.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    budget: Budget,
}

/// The CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A time limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrun {
    Cpu(Duration),
    Wall(Duration),
}

/// One call's time budget. Deadlines count the CPU time the call itself
/// used, read from the calling thread's CPU clock: a worker descheduled by
/// other work on a busy machine has not spent the policy's budget. The
/// epoch clock only says *when to look*: the first look is due when the
/// budget's worth of wall time has passed (CPU time cannot be ahead of it),
/// and each look that finds budget left sets the next one for when the rest
/// could be used up. A wall-clock ceiling stops a call that, however
/// little CPU it gets, would hold its worker too long.
struct Budget {
    cpu: Duration,
    wall: Duration,
    tick: Duration,
    cpu_start: Duration,
    wall_start: Instant,
    hit: Option<Overrun>,
}

impl Budget {
    fn ticks(&self, d: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        u64::try_from(d.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Called by wasmtime on the calling thread when the epoch deadline is
    /// reached.
    fn look(&mut self) -> UpdateDeadline {
        let cpu = thread_cpu().saturating_sub(self.cpu_start);
        let wall = self.wall_start.elapsed();
        if cpu >= self.cpu {
            self.hit = Some(Overrun::Cpu(self.cpu));
            return UpdateDeadline::Interrupt;
        }
        if wall >= self.wall {
            self.hit = Some(Overrun::Wall(self.wall));
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(self.ticks((self.cpu - cpu).min(self.wall - wall)))
    }
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

/// Most elements of one wasm table (function tables of a large policy, e.g.
/// an interpreter, hold tens of thousands).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A limit an instance ran into. The limiter records it before failing the
/// growth, so a fault is classified by what happened, not by an error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exceeded {
    #[error(
        "linear memory would grow to {desired} bytes, over the policy's memory limit of \
         {limit} bytes (`memory` in [sandbox] or the vhost)"
    )]
    Memory { desired: usize, limit: usize },
    #[error("a table would grow to {desired} elements, over the limit of {limit}")]
    Table { desired: usize, limit: usize },
}

/// Caps one store's memories and tables.
struct Limiter {
    memory: usize,
    hit: Option<Exceeded>,
}

impl Limiter {
    fn refuse(&mut self, e: Exceeded) -> wasmtime::Result<bool> {
        self.hit = Some(e);
        // An error (rather than `Ok(false)`) traps at once, instead of letting
        // the guest see a failed `memory.grow` and limp on.
        Err(e.into())
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return self.refuse(Exceeded::Memory {
                desired,
                limit: self.memory,
            });
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return self.refuse(Exceeded::Table {
                desired,
                limit: MAX_TABLE_ELEMENTS,
            });
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        4
    }
}

/// A policy's pre-linked component, per supported WIT version.
pub(super) enum Pre {
    V0_2(v0_2::PolicyPre<HostState>),
    V0_1(v0_1::PolicyPre<HostState>),
}

enum Api {
    /// The generated binding calls `configure`; `decide` is called through
    /// views, so a decision is measured before it is copied (`bounded`).
    V0_2(v0_2::Policy, Decide),
    V0_1(v0_1::Policy),
}

/// What `configure` returned, in the current contract's terms; a 0.1.0
/// policy's capabilities are marked so the caller gives it what 0.1.0 did.
pub(super) enum Configured {
    V0_2(wit::Capabilities),
    V0_1 {
        index_names: Vec<String>,
        siblings: Vec<wit::ContentCoding>,
    },
}

/// A configured instance ready for `decide`.
pub struct Warm {
    store: Store<HostState>,
    api: Api,
}

impl Warm {
    pub(super) fn new(
        sandbox: &Sandbox,
        pre: &Pre,
        limits: SandboxLimits,
    ) -> Result<Warm, CallError> {
        let state = HostState {
            // No preopens, no environment, no arguments, no network: std's WASI
            // imports resolve, but grant nothing.
            wasi: WasiCtx::builder().max_random_size(MAX_RANDOM).build(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            limiter: Limiter {
                memory: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                hit: None,
            },
            budget: Budget {
                cpu: limits.deadline,
                wall: limits.wall,
                tick: sandbox.tick,
                cpu_start: thread_cpu(),
                wall_start: Instant::now(),
                hit: None,
            },
        };
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().budget.look()));
        store.set_epoch_deadline(sandbox.ticks(limits.deadline));
        // What the host may copy out of the guest in one call (results,
        // and the arguments of WASI calls it makes): the policy's own memory
        // cap, not wasmtime's 128 MiB default, so aliasing one buffer many
        // times cannot make the host hold more than the policy could.
        store.set_hostcall_fuel(usize::try_from(limits.memory).unwrap_or(usize::MAX));
        // Instantiation runs the component's start functions: guest code.
        let api = super::guarded(|| match pre {
            Pre::V0_2(pre) => {
                let instance = pre.instance_pre().instantiate(&mut store)?;
                let policy = v0_2::Policy::new(&mut store, &instance)?;
                Ok(Api::V0_2(policy, Decide::new(&mut store, &instance)?))
            }
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Api::V0_1),
        });
        match api {
            Ok(api) => Ok(Warm { store, api }),
            Err(e) => Err(match store.data().limiter.hit {
                Some(hit) => CallError::Exceeded(hit),
                None => match e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
                    Some(full) => CallError::Pool(full.to_string()),
                    None => CallError::Instantiate(format!("{e:#}")),
                },
            }),
        }
    }

    /// Starts the budget of the next call.
    pub fn arm(&mut self, sandbox: &Sandbox) {
        let budget = &mut self.store.data_mut().budget;
        budget.cpu_start = thread_cpu();
        budget.wall_start = Instant::now();
        let first_look = sandbox.ticks(budget.cpu);
        self.store.set_epoch_deadline(first_look);
    }

    pub(super) fn configure(
        &mut self,
        settings: &[wit::Setting],
        host: wit::HostLimits,
    ) -> Result<Result<Configured, String>, CallError> {
        let result = super::guarded(|| match &self.api {
            Api::V0_2(p, _) => p
                .call_configure(&mut self.store, settings, host)
                .map(|r| r.map(Configured::V0_2)),
            Api::V0_1(p) => p
                .call_configure(&mut self.store, &adapt::settings(settings))
                .map(|r| {
                    r.map(|caps| Configured::V0_1 {
                        index_names: caps.index_names,
                        siblings: caps.siblings.into_iter().map(adapt::coding_from).collect(),
                    })
                }),
        });
        result.map_err(|e| self.fault(e))
    }

    /// Calls `decide`; `transport` is the policy's own, from `configure`
    /// (a 0.1.0 decision brings its own). A 0.2 decision over the host's
    /// limits is refused before it is copied out (`bounded`); a 0.1.0 one
    /// is copied by the generated binding, within the host-copy allowance.
    pub(super) fn decide(
        &mut self,
        req: &wit::Request,
        entry: &wit::Entry,
        transport: Transport,
    ) -> Result<(wit::Decision, Transport), CallError> {
        let result = super::guarded(|| match &self.api {
            Api::V0_2(_, decide) => decide
                .call(&mut self.store, req, entry)
                .map(|d| (d, transport)),
            Api::V0_1(p) => p
                .call_decide(&mut self.store, &adapt::request(req), &adapt::entry(entry))
                .map(adapt::decision),
        });
        result.map_err(|e| match bounded::over_limit(&e) {
            Some(rule) => CallError::Invalid(rule),
            None => self.fault(e),
        })
    }

    /// Sorts a failed call into what the client should be told, from what
    /// the store recorded and the trap code, never from an error's text.
    fn fault(&self, e: wasmtime::Error) -> CallError {
        let state = self.store.data();
        if let Some(hit) = state.limiter.hit {
            return CallError::Exceeded(hit);
        }
        match (e.downcast_ref::<wasmtime::Trap>(), state.budget.hit) {
            (Some(wasmtime::Trap::Interrupt), Some(Overrun::Wall(wall))) => {
                CallError::WallClock(wall)
            }
            (Some(wasmtime::Trap::Interrupt), _) => CallError::Deadline(state.budget.cpu),
            (trap, _) => match trap {
                Some(wasmtime::Trap::StackOverflow) => CallError::Stack,
                Some(wasmtime::Trap::AllocationTooLarge) => CallError::Exceeded(Exceeded::Memory {
                    desired: usize::MAX,
                    limit: state.limiter.memory,
                }),
                _ => CallError::Trap(format!("{e:#}")),
            },
        }
    }
}
