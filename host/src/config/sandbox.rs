//! `[sandbox]`: the wasmtime settings every policy runs under, the limits
//! one policy component is held to, and a policy's settings as the WIT
//! passes them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// Limits for one policy component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SandboxLimits {
    /// CPU time one `decide` call may use (after an instance's first):
    /// time the calling thread was descheduled does not count, so a busy
    /// machine does not fail a well-behaved policy.
    pub deadline: Duration,
    /// Ceiling of one call's time on the CPU or blocked off it (time spent
    /// waiting for a CPU is not counted).
    pub wall: Duration,
    /// CPU time a new instance may use, on top of its first `decide`'s
    /// deadline, for its warm-up: instantiation, `configure`, and what the
    /// first call costs more than later ones.
    pub warmup: Duration,
    /// Maximum linear memory of one instance.
    pub memory: u64,
}

impl SandboxLimits {
    /// A new instance's budget for instantiation, `configure` and its first
    /// `decide` together: the call's deadline and the warm-up allowance, so
    /// a call that fits its deadline fits as an instance's first call too.
    pub fn warmup_budget(&self) -> Duration {
        self.deadline.saturating_add(self.warmup)
    }

    /// The ceiling over the same: the call's, and ten times the allowance.
    pub fn warmup_wall(&self) -> Duration {
        self.wall.saturating_add(self.warmup.saturating_mul(10))
    }
}

/// Wasmtime settings shared by every policy.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// CPU time per policy call, milliseconds.
    pub deadline_ms: u64,
    /// Ceiling per policy call of its time on the CPU or blocked off it
    /// (not waiting for a CPU: a busy machine does not count against it),
    /// milliseconds; 0 for ten times `deadline-ms`.
    pub wall_ms: u64,
    /// CPU time a new instance may use for its warm-up (instantiation,
    /// `configure`, and what its first `decide` costs more than later ones),
    /// on top of that call's `deadline-ms`, milliseconds: an interpreter's
    /// lazy compilation and first allocations are paid there, not out of a
    /// request's deadline.
    pub warmup_ms: u64,
    /// Calls of one site's policy that may run at once; 0 for half the
    /// runtime's workers (at least one). Further calls wait their turn
    /// without holding a worker, so one tenant cannot take them all.
    pub policy_workers: usize,
    pub memory: ByteSize,
    pub stack: ByteSize,
    /// Pooling-allocator slots (live instances of all sites together).
    pub instances: u32,
    /// Linear memory the idle instances of all sites may hold together;
    /// past it, the least recently used is dropped.
    pub idle_memory: ByteSize,
    /// Epoch tick, milliseconds: the granularity of deadlines.
    pub tick_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            deadline_ms: 10,
            wall_ms: 0,
            warmup_ms: 100,
            policy_workers: 0,
            memory: ByteSize(16 << 20),
            stack: ByteSize(512 << 10),
            instances: 64,
            idle_memory: ByteSize(512 << 20),
            tick_ms: 1,
        }
    }
}

impl SandboxConfig {
    pub fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            deadline: Duration::from_millis(self.deadline_ms),
            wall: wall_ceiling(self.wall_ms, self.deadline_ms),
            warmup: Duration::from_millis(self.warmup_ms),
            memory: self.memory.0,
        }
    }
}

/// The wall-clock ceiling: as configured, or ten times the CPU budget.
pub fn wall_ceiling(wall_ms: u64, deadline_ms: u64) -> Duration {
    Duration::from_millis(match wall_ms {
        0 => deadline_ms.saturating_mul(10),
        n => n.max(deadline_ms),
    })
}
