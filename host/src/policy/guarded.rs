//! Calls into wasm with a host panic caught.

/// Runs a call into wasm, turning a panic in a host function it called (e.g.
/// a WASI import that tries to block on the tokio runtime) into an error, so
/// the caller answers 500 and retires the instance instead of unwinding
/// through hyper and dropping the connection.
pub(super) fn guarded<R>(call: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(wasmtime::Error::msg(format!(
                "a host function called by the policy panicked: {message}"
            )))
        }
    }
}
