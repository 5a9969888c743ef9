//! How many instances a site keeps and may hold: what the idle set keeps
//! per site and what the pooling allocator is sized by.

/// The cores calls can run on at once, read once per process.
///
/// `available_parallelism` is not a cheap read on Linux: each call opens and
/// reads `/proc/self/cgroup` and the cgroup's quota files (and stats the
/// mount points) to honour a CPU quota. It was called per policy call, when
/// an instance was given back (`max_idle_instances`): ~25 µs of syscalls
/// that made the uncached call 5x what it costs (host/benches/RESULTS.md,
/// 2026-12-02). The quota a process starts under is the one it sizes its
/// pool by; a later change to it is not followed (nor were the pool sizes
/// computed from it at load).
pub(super) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Warm instances one site keeps idle between requests.
pub(super) fn max_idle_instances() -> usize {
    2 * cores()
}

/// Pooling-allocator slots one site can hold at once: its idle instances
/// plus one in flight per worker (at most one per core), doubled because a
/// reload briefly keeps the old policy beside the new one.
pub fn slots_per_site() -> u32 {
    u32::try_from(2 * (max_idle_instances() + cores())).unwrap_or(u32::MAX)
}
