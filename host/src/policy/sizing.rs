//! How many instances a site keeps and may hold: what the idle set keeps
//! per site and what the pooling allocator is sized by.

/// The cores calls can run on at once.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
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
