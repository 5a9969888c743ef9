//! One store + instance of a policy: instantiated, configured and called
//! within its budgets, and a failed call sorted into its typed fault.

use std::time::Duration;

use wasmtime::Store;

use super::bounded::Decide;
use super::capabilities::Configured;
use super::error::{CallError, Exceeded};
use super::guarded::guarded;
use super::runtime::Runtime;
use super::store::{thread_cpu, HostState, Overrun, Pre, LOOK_EVERY};
use super::{v0_1 as adapt, v0_2 as adapt_0_2};
use crate::config::SandboxLimits;
use crate::contract::wit::{self, v0_1, v0_2, v0_3};
use crate::contract::Transport;
use crate::policy_text::PolicyText;

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

enum Api {
    /// The generated binding calls `configure`; `decide` is called through
    /// views, so a decision is measured before it is copied (`bounded`).
    V0_3(v0_3::Policy, Decide),
    V0_2(v0_2::Policy, Decide),
    V0_1(v0_1::Policy),
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
        runtime: &Runtime,
        pre: &Pre,
        limits: SandboxLimits,
    ) -> Result<Warm, CallError> {
        let state = HostState::new(limits, runtime.tick);
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().budget.look()));
        store
            .data_mut()
            .budget
            .start(limits.warmup_budget(), limits.warmup_wall(), true);
        store.set_epoch_deadline(runtime.ticks(limits.warmup_budget()).min(LOOK_EVERY));
        // What the host may copy out of the guest in one call (results,
        // and the arguments of WASI calls it makes): the policy's own memory
        // cap, not wasmtime's 128 MiB default, so aliasing one buffer many
        // times cannot make the host hold more than the policy could.
        store.set_hostcall_fuel(usize::try_from(limits.memory).unwrap_or(usize::MAX));
        // Instantiation runs the component's start functions: guest code.
        let api = guarded(|| match pre {
            Pre::V0_3(pre) => {
                let instance = pre.instance_pre().instantiate(&mut store)?;
                let policy = v0_3::Policy::new(&mut store, &instance)?;
                let decide = Decide::new(&mut store, &instance, "0.3.0")?;
                Ok(Api::V0_3(policy, decide))
            }
            Pre::V0_2(pre) => {
                let instance = pre.instance_pre().instantiate(&mut store)?;
                let policy = v0_2::Policy::new(&mut store, &instance)?;
                let decide = Decide::new(&mut store, &instance, "0.2.0")?;
                Ok(Api::V0_2(policy, decide))
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
    fn arm(&mut self, runtime: &Runtime) {
        if std::mem::take(&mut self.warming) {
            return;
        }
        let (cpu, wall) = (self.limits.deadline, self.limits.wall);
        self.store.data_mut().budget.start(cpu, wall, false);
        self.store
            .set_epoch_deadline(runtime.ticks(cpu).min(LOOK_EVERY));
    }

    /// Calls `configure`, within the warm-up budget (it is called once per
    /// instance, before any `decide`).
    pub(super) fn configure(
        &mut self,
        runtime: &Runtime,
        settings: &[wit::Setting],
        host: wit::HostLimits,
    ) -> ConfigureResult {
        let _running = runtime.running();
        let result = guarded(|| match &self.api {
            Api::V0_3(p, _) => p
                .call_configure(&mut self.store, settings, host)
                .map(|r| r.map(Configured::V0_3)),
            Api::V0_2(p, _) => p
                .call_configure(
                    &mut self.store,
                    &adapt_0_2::settings(settings),
                    adapt_0_2::host_limits(host),
                )
                .map(|r| r.map(|c| Configured::V0_3(adapt_0_2::capabilities(c)))),
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
    /// (a 0.1.0 decision brings its own). A 0.3 outcome or 0.2 decision
    /// over the host's limits is not copied out (`bounded`), but the call
    /// completes (the guest's post-return runs, freeing the result), so the
    /// instance is as after any call and stays in use; the outcome is
    /// reported invalid. A 0.1.0 decision is copied by the generated
    /// binding, within the host-copy allowance. An older policy's decision
    /// is always `respond`.
    pub(super) fn decide(
        &mut self,
        runtime: &Runtime,
        req: &wit::Request,
        entry: &wit::Entry,
        transport: Transport,
    ) -> Result<(wit::Outcome, Transport), CallError> {
        self.arm(runtime);
        let _running = runtime.running();
        let result = guarded(|| match &self.api {
            Api::V0_3(_, decide) | Api::V0_2(_, decide) => decide
                .call(&mut self.store, req, entry)
                .map(|d| d.map(|d| (d, transport)).map_err(CallError::Invalid)),
            Api::V0_1(p) => p
                .call_decide(&mut self.store, &adapt::request(req), &adapt::entry(entry))
                .map(|d| {
                    let (decision, transport) = adapt::decision(d);
                    Ok((wit::Outcome::Respond(decision), transport))
                }),
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
