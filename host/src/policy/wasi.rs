//! The WASI imports a policy gets: wasmtime-wasi's, on an empty context, with
//! every import that could block the calling thread replaced.
//!
//! wasmtime-wasi's synchronous bindings run the few "blocking" WASI functions
//! (`poll`, `pollable.block`, `blocking-write-and-flush`, dropping a stream, …)
//! through `Handle::block_on` on the current tokio runtime. Policies run on the
//! runtime's async workers, where that panics ("Cannot start a runtime from
//! within a runtime"); and where it does not panic (a blocking-pool thread, as
//! during a reload's canary call) a guest `sleep` would hold the thread for as
//! long as it likes, out of reach of the epoch deadline, which only interrupts
//! wasm code. So:
//!
//! * waiting (`poll`, `pollable.block`, `pollable.ready`) and blocking reads
//!   trap: a policy has nothing to wait for;
//! * blocking writes and flushes succeed and discard the bytes, which is what
//!   the empty context's stdout/stderr (the only output streams a policy can
//!   obtain) do anyway — so a guest's debug `println!` costs nothing;
//! * streams are dropped synchronously.
//!
//! What remains of the `in_tokio` paths (sockets, which the empty context
//! denies anyway) can only panic, and `guarded` turns a host panic
//! into a trap of that instance.

use wasmtime::component::{Linker, Resource, ResourceType, Val};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::store::HostState;

/// The `wasi:io` version wasmtime-wasi 48 defines; components importing any
/// older 0.2.x resolve to it by semver. If a wasmtime upgrade changes it, the
/// shadowing below would land in a new, unused namespace: the e2e tests
/// `sandbox::evil_policies_fail_fast_while_others_are_served` (`/sleep`,
/// `/print`) fail then.
const IO: &str = "0.2.12";

fn trap(
    what: &'static str,
) -> impl Fn(
    wasmtime::StoreContextMut<'_, HostState>,
    wasmtime::component::types::ComponentFunc,
    &[Val],
    &mut [Val],
) -> wasmtime::Result<()>
       + Send
       + Sync
       + 'static {
    move |_, _, _, _| {
        Err(wasmtime::Error::msg(format!(
            "policy called {what}: a policy may not block"
        )))
    }
}

fn discard(
    mut store: wasmtime::StoreContextMut<'_, HostState>,
    _: wasmtime::component::types::ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    // A dynamic host function must end the borrow of `self` itself.
    for p in params {
        if let Val::Resource(r) = p {
            r.resource_drop(&mut store)?;
        }
    }
    results[0] = Val::Result(Ok(None));
    Ok(())
}

/// Links wasmtime-wasi's synchronous p2 imports, then shadows the blocking ones.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    {
        let mut poll = linker.instance(&format!("wasi:io/poll@{IO}"))?;
        poll.func_new("poll", trap("wasi:io/poll.poll"))?;
        poll.func_new(
            "[method]pollable.block",
            trap("wasi:io/poll.pollable.block"),
        )?;
        poll.func_new(
            "[method]pollable.ready",
            trap("wasi:io/poll.pollable.ready"),
        )?;
    }
    {
        let mut streams = linker.instance(&format!("wasi:io/streams@{IO}"))?;
        streams.func_new(
            "[method]input-stream.blocking-read",
            trap("wasi:io/streams.blocking-read"),
        )?;
        streams.func_new(
            "[method]input-stream.blocking-skip",
            trap("wasi:io/streams.blocking-skip"),
        )?;
        streams.func_new(
            "[method]output-stream.blocking-splice",
            trap("wasi:io/streams.blocking-splice"),
        )?;
        streams.func_new("[method]output-stream.blocking-write-and-flush", discard)?;
        streams.func_new(
            "[method]output-stream.blocking-write-zeroes-and-flush",
            discard,
        )?;
        streams.func_new("[method]output-stream.blocking-flush", discard)?;
        streams.resource(
            "input-stream",
            ResourceType::host::<DynInputStream>(),
            |mut store, rep| {
                store
                    .data_mut()
                    .table()
                    .delete(Resource::<DynInputStream>::new_own(rep))?;
                Ok(())
            },
        )?;
        streams.resource(
            "output-stream",
            ResourceType::host::<DynOutputStream>(),
            |mut store, rep| {
                store
                    .data_mut()
                    .table()
                    .delete(Resource::<DynOutputStream>::new_own(rep))?;
                Ok(())
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
