//! One store + instance of a policy, its limits, and the typed faults a call
//! can end in.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bounded::Decide;
use super::engine::Sandbox;
use super::wit::{self, v0_1, v0_2};
use super::{v0_1 as adapt, CallError, Transport};
use crate::config::SandboxLimits;
use crate::policy_text::PolicyText;

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

/// The time the calling thread has spent runnable but waiting for a CPU (the
/// scheduler's run-queue delay: the second field of
/// `/proc/thread-self/schedstat`), or `None` where the kernel does not say
/// (built without `CONFIG_SCHED_INFO`). The file is opened once per thread
/// and read with `pread`, by the looks at a call that runs past a tick or
/// two (see [`Budget`]), never on a short call's path.
fn run_queue_wait() -> Option<Duration> {
    use std::cell::OnceCell;
    use std::os::unix::fs::FileExt;
    thread_local! {
        static SCHEDSTAT: OnceCell<Option<std::fs::File>> = const { OnceCell::new() };
    }
    SCHEDSTAT.with(|file| {
        let file = file
            .get_or_init(|| std::fs::File::open("/proc/thread-self/schedstat").ok())
            .as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let ns = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    })
}

/// A time limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrun {
    Cpu(Duration),
    Wall(Duration),
}

/// One call's time budget. Deadlines count the CPU time the call itself
/// used, read from the calling thread's CPU clock (and never more than the
/// wall time elapsed): a worker descheduled by other work on a busy machine
/// has not spent the policy's budget. The
/// epoch clock only says *when to look*: every other tick at most
/// ([`LOOK_EVERY`]), sooner when the rest of the budget could be used up
/// before that.
///
/// The wall-clock ceiling (`wall-ms`) stops a call that holds its thread
/// long while using little CPU: one *blocked* off the CPU (a page fault
/// waiting for the disk, a host call that waits). Time the thread spent
/// waiting for a CPU is not the call's doing, and is not counted: a busy
/// machine, or a container throttled by its CPU quota, can keep a runnable
/// thread off the CPU for 100 ms and more, and that must not fail a good
/// policy (it did: `sandbox::deadlines_count_cpu_time_not_a_busy_machine`,
/// 1 call in 800 under load). So what the ceiling bounds is the CPU time
/// used plus the time blocked, the latter measured from the first look on
/// as wall time less CPU time less run-queue wait (`run_queue_wait`); the
/// wall time before the first look (a tick or two) is not counted as
/// blocked. Where the kernel does not report run-queue wait, all off-CPU
/// time counts, from the start of the call.
struct Budget {
    cpu: Duration,
    wall: Duration,
    tick: Duration,
    cpu_start: Duration,
    wall_start: Instant,
    /// The budget is a new instance's (`deadline-ms` + `warmup-ms`).
    warmup: bool,
    /// The thread's clocks at the previous look, from the first look on.
    last: Option<Sample>,
    /// Off-CPU time not spent waiting for a CPU, since the first look.
    blocked: Duration,
    hit: Option<Overrun>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: Duration,
    /// Run-queue wait so far; `None` where the kernel does not say.
    waited: Option<Duration>,
}

impl Budget {
    fn ticks(&self, d: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        u64::try_from(d.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Starts a call's budget: `cpu` of CPU time, `wall` of CPU time plus
    /// time blocked.
    fn start(&mut self, cpu: Duration, wall: Duration, warmup: bool) {
        self.cpu = cpu;
        self.wall = wall;
        self.warmup = warmup;
        self.cpu_start = thread_cpu();
        self.wall_start = Instant::now();
        self.last = None;
        self.blocked = Duration::ZERO;
        self.hit = None;
    }

    /// Called by wasmtime on the calling thread when the epoch deadline is
    /// reached.
    fn look(&mut self) -> UpdateDeadline {
        let now_cpu = thread_cpu();
        let at = Instant::now();
        // No call uses more CPU time than the wall time it took; the
        // thread's CPU clock can say so all the same (on this 2-vCPU VM
        // under load, a 3 ms spin was once charged 9.4 ms: 1 in 5,000), and
        // that failed a call using a third of its budget.
        let cpu = now_cpu
            .saturating_sub(self.cpu_start)
            .min(at - self.wall_start);
        if cpu >= self.cpu {
            self.hit = Some(Overrun::Cpu(self.cpu));
            return UpdateDeadline::Interrupt;
        }
        let now = Sample {
            at,
            cpu: now_cpu,
            waited: run_queue_wait(),
        };
        let off_cpu =
            |since: &Sample| (now.at - since.at).saturating_sub(now.cpu.saturating_sub(since.cpu));
        self.blocked += match (self.last, now.waited) {
            (Some(last), Some(waited)) => {
                off_cpu(&last).saturating_sub(waited.saturating_sub(last.waited.unwrap_or(waited)))
            }
            (Some(last), None) => off_cpu(&last),
            (None, Some(_)) => Duration::ZERO,
            // No run-queue figures: all off-CPU time since the call began.
            (None, None) => (now.at - self.wall_start).saturating_sub(cpu),
        };
        self.last = Some(now);
        let held = cpu + self.blocked;
        if held >= self.wall {
            self.hit = Some(Overrun::Wall(self.wall));
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(
            self.ticks((self.cpu - cpu).min(self.wall - held))
                .min(LOOK_EVERY),
        )
    }
}

/// Most epoch ticks between two looks at a running call's clocks. Looking
/// only when the rest of the budget could be used up would be enough if
/// ticks came on time; on a loaded machine the clock thread is itself kept
/// waiting, ticks come late, and a loop would overrun its budget by the
/// delay of every tick it waited for. A look costs a clock read (and, from
/// the first on, a `pread` of the schedstat file): every other tick of a
/// call that runs that long is nothing next to the call.
const LOOK_EVERY: u64 = 2;

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

/// A failed call's message, to be shown: what happened first (`wasm trap:
/// out of bounds memory access`), then the whole error with its wasm
/// backtrace. The backtrace names the component's own functions (the
/// policy's text, escaped) and can be as deep as the stack, so it is what
/// the cut to `MAX_SHOWN` takes, never the reason.
fn reason_first(e: &wasmtime::Error) -> PolicyText {
    let reason = e.root_cause().to_string();
    let whole = format!("{e:#}");
    if whole == reason {
        whole.into()
    } else {
        format!("{reason}; in full: {whole}").into()
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

/// Caps one store's memories and tables, and counts its linear memory.
struct Limiter {
    memory: usize,
    /// Bytes of linear memory the store's memories have, together (what
    /// the idle set's `idle-memory` bound counts).
    bytes: usize,
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
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return self.refuse(Exceeded::Memory {
                desired,
                limit: self.memory,
            });
        }
        // Also called when a memory is created (from 0 to its initial size).
        self.bytes = self.bytes.saturating_add(desired.saturating_sub(current));
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

/// What a `configure` call ended in: a fault, or the policy's own answer
/// (its capabilities, or why it refuses the settings).
pub(super) type ConfigureResult = Result<Result<Configured, String>, CallError>;

/// An instance of one site's policy, configured for it.
///
/// A new instance's first steps (instantiation, `configure` and its first
/// `decide`) run under one budget together: the first call's `deadline-ms`
/// and a warm-up allowance, `warmup-ms`. An interpreter's lazy compilation
/// and first allocations are paid out of the allowance, and would otherwise
/// fail the first request of every instance; and a call that fits its
/// deadline fits as a first call too. Every later call has the
/// `deadline-ms` budget.
pub struct Warm {
    store: Store<HostState>,
    api: Api,
    /// The warm-up budget is still running: the first `decide` continues
    /// it instead of starting a call budget.
    warming: bool,
    limits: SandboxLimits,
}

impl Warm {
    /// Instantiates the component, starting the warm-up budget.
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
                bytes: 0,
                hit: None,
            },
            budget: Budget {
                cpu: limits.warmup_budget(),
                wall: limits.warmup_wall(),
                tick: sandbox.tick,
                cpu_start: Duration::ZERO,
                wall_start: Instant::now(),
                warmup: true,
                last: None,
                blocked: Duration::ZERO,
                hit: None,
            },
        };
        let mut store = Store::new(&sandbox.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().budget.look()));
        store
            .data_mut()
            .budget
            .start(limits.warmup_budget(), limits.warmup_wall(), true);
        store.set_epoch_deadline(sandbox.ticks(limits.warmup_budget()).min(LOOK_EVERY));
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
            Ok(api) => Ok(Warm {
                store,
                api,
                warming: true,
                limits,
            }),
            Err(e) => Err(match store.data().limiter.hit {
                Some(hit) => CallError::Exceeded(hit),
                None => match e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
                    Some(full) => CallError::Pool(full.to_string()),
                    None => match e.downcast_ref::<wasmtime::Trap>() {
                        Some(wasmtime::Trap::Interrupt) => Self::overrun(store.data()),
                        _ => CallError::Instantiate(reason_first(&e)),
                    },
                },
            }),
        }
    }

    /// Bytes of linear memory this instance has.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.bytes as u64
    }

    /// CPU time used since the current budget started (for a new instance
    /// after its first `decide`: its whole warm-up).
    pub fn cpu_used(&self) -> Duration {
        thread_cpu().saturating_sub(self.store.data().budget.cpu_start)
    }

    /// Whether the next `decide` is this instance's first.
    pub fn is_new(&self) -> bool {
        self.warming
    }

    /// Starts the budget of a call: the `deadline-ms` one, unless the
    /// warm-up budget is still running (a new instance's first `decide`).
    fn arm(&mut self, sandbox: &Sandbox) {
        if std::mem::take(&mut self.warming) {
            return;
        }
        let (cpu, wall) = (self.limits.deadline, self.limits.wall);
        self.store.data_mut().budget.start(cpu, wall, false);
        self.store
            .set_epoch_deadline(sandbox.ticks(cpu).min(LOOK_EVERY));
    }

    /// Calls `configure`, within the warm-up budget (it is called once per
    /// instance, before any `decide`).
    pub(super) fn configure(
        &mut self,
        sandbox: &Sandbox,
        settings: &[wit::Setting],
        host: wit::HostLimits,
    ) -> ConfigureResult {
        let _running = sandbox.running();
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
    /// limits is not copied out (`bounded`), but the call completes (the
    /// guest's post-return runs, freeing the result), so the instance is as
    /// after any call and stays in use; the decision is reported invalid.
    /// A 0.1.0 decision is copied by the generated binding, within the
    /// host-copy allowance.
    pub(super) fn decide(
        &mut self,
        sandbox: &Sandbox,
        req: &wit::Request,
        entry: &wit::Entry,
        transport: Transport,
    ) -> Result<(wit::Decision, Transport), CallError> {
        self.arm(sandbox);
        let _running = sandbox.running();
        let result = super::guarded(|| match &self.api {
            Api::V0_2(_, decide) => decide
                .call(&mut self.store, req, entry)
                .map(|d| d.map(|d| (d, transport)).map_err(CallError::Invalid)),
            Api::V0_1(p) => p
                .call_decide(&mut self.store, &adapt::request(req), &adapt::entry(entry))
                .map(|d| Ok(adapt::decision(d))),
        });
        result.unwrap_or_else(|e| Err(self.fault(e)))
    }

    /// The time limit a call ran into (the store recorded which).
    fn overrun(state: &HostState) -> CallError {
        match (state.budget.hit, state.budget.warmup) {
            (Some(Overrun::Wall(wall)), _) => CallError::WallClock(wall),
            (_, true) => CallError::Warmup(state.budget.cpu),
            (_, false) => CallError::Deadline(state.budget.cpu),
        }
    }

    /// Sorts a failed call into what the client should be told, from what
    /// the store recorded and the trap code, never from an error's text.
    fn fault(&self, e: wasmtime::Error) -> CallError {
        let state = self.store.data();
        if let Some(hit) = state.limiter.hit {
            return CallError::Exceeded(hit);
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Self::overrun(state),
            Some(wasmtime::Trap::StackOverflow) => CallError::Stack,
            Some(wasmtime::Trap::AllocationTooLarge) => CallError::Exceeded(Exceeded::Memory {
                desired: usize::MAX,
                limit: state.limiter.memory,
            }),
            _ => CallError::Trap(reason_first(&e)),
        }
    }
}
