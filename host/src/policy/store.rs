//! What one wasmtime store of a policy holds besides the instance: an empty
//! WASI context, the resource limiter and the running call's time budget
//! ([`HostState`]), and the pre-linked component a store is instantiated
//! from ([`Pre`]). Below the instance, the linker and the bounded decide,
//! which all name it.

use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::error::Exceeded;
use crate::config::SandboxLimits;
use crate::contract::wit::{v0_1, v0_2, v0_3};

/// Per-store host state: an empty WASI context, the resource limiter and
/// the running call's time budget.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) budget: Budget,
}

/// The CPU time the calling thread has used.
pub(super) fn thread_cpu() -> Duration {
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
pub(super) enum Overrun {
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
pub(super) struct Budget {
    pub(super) cpu: Duration,
    wall: Duration,
    tick: Duration,
    pub(super) cpu_start: Duration,
    wall_start: Instant,
    /// The budget is a new instance's (`deadline-ms` + `warmup-ms`).
    pub(super) warmup: bool,
    /// The thread's clocks at the previous look, from the first look on.
    last: Option<Sample>,
    /// Off-CPU time not spent waiting for a CPU, since the first look.
    blocked: Duration,
    pub(super) hit: Option<Overrun>,
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
    pub(super) fn start(&mut self, cpu: Duration, wall: Duration, warmup: bool) {
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
    pub(super) fn look(&mut self) -> UpdateDeadline {
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
pub(super) const LOOK_EVERY: u64 = 2;

impl HostState {
    /// A new store's state: an empty WASI context, memory capped at the
    /// policy's limit, and the warm-up budget (which `Warm::new` starts).
    pub(super) fn new(limits: SandboxLimits, tick: Duration) -> HostState {
        HostState {
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
                tick,
                cpu_start: Duration::ZERO,
                wall_start: Instant::now(),
                warmup: true,
                last: None,
                blocked: Duration::ZERO,
                hit: None,
            },
        }
    }

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

/// Caps one store's memories and tables, and counts its linear memory.
pub(super) struct Limiter {
    pub(super) memory: usize,
    /// Bytes of linear memory the store's memories have, together (what
    /// the idle set's `idle-memory` bound counts).
    pub(super) bytes: usize,
    pub(super) hit: Option<Exceeded>,
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
    V0_3(v0_3::PolicyPre<HostState>),
    V0_2(v0_2::PolicyPre<HostState>),
    V0_1(v0_1::PolicyPre<HostState>),
}
