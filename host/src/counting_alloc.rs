//! A counting allocator for unit tests: the system allocator, with each
//! thread's live heap bytes counted as glibc's malloc really takes them (the
//! chunk: `malloc_usable_size` plus its 8-byte header), so tests can check
//! what a structure costs against what the code claims it costs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

extern "C" {
    fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
}

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// The system allocator, counting.
pub struct Counting;

fn chunk(ptr: *mut u8) -> i64 {
    if ptr.is_null() {
        0
    } else {
        // SAFETY: `ptr` came from the system allocator (malloc family).
        (unsafe { malloc_usable_size(ptr.cast()) } + 8) as i64
    }
}

fn count(delta: i64) {
    // `try_with`: during thread teardown the counter may be gone.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call is forwarded to `System`; the counting has no effect on
// what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        count(chunk(p));
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        count(chunk(p));
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-chunk(ptr));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = chunk(ptr);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(chunk(p) - before);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Heap bytes this thread has allocated and not freed (frees of memory
/// allocated by other threads count against it too: keep a measurement on
/// one thread).
pub fn live() -> i64 {
    LIVE.with(Cell::get)
}
