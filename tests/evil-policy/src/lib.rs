//! A deliberately misbehaving policy, used as a fixture by the sandbox tests
//! (`tests/e2e/sandbox.rs`). What it does is chosen by the request path:
//!
//! | path                | behaviour                                              |
//! |---------------------|--------------------------------------------------------|
//! | `/loop`             | loops forever                                          |
//! | `/alloc`            | allocates (and touches) memory without bound           |
//! | `/trap`             | executes `unreachable`                                 |
//! | `/panic`            | panics (which aborts: a trap)                          |
//! | `/stack`            | recurses without bound on the wasm stack               |
//! | `/shadow-stack`     | recurses without bound on the linear-memory stack      |
//! | `/headers`          | returns 100,000 header fields                          |
//! | `/aliased/<n>`      | returns `<n>` header values, each 1 MiB, all one buffer|
//! | `/sleep`            | sleeps for a minute through WASI (a blocking host call)|
//! | `/print`            | writes to stdout and stderr, then answers 200          |
//! | `/spin/<ms>`        | busy-waits `<ms>` milliseconds, then answers `spun`    |
//! | `/file/...`         | serves the file found there (404 when missing)         |
//! | `/invalid/<rule>`   | returns a decision breaking `<rule>`                   |
//! | `/remember/...`     | answers the path of the previous request this instance |
//! |                     | decided (state kept between calls, which the contract  |
//! |                     | forbids, and which must never cross tenants)           |
//! | `/rw/chain/<n>`     | rewrites to `/rw/chain/<n-1>`; `/rw/chain/0` answers   |
//! |                     | `hop <count> from <original> because <reason>`         |
//! | `/rw/loop/a`, `/b`  | rewrite to each other                                  |
//! | `/rw/self`          | rewrites to itself, with a reason forging a log line   |
//! | `/rw/bad/<case>`    | rewrites to a path that is not normalized (`up`,       |
//! |                     | `dots`, `relative`, `nul`, `empty`, `double`) or with a|
//! |                     | reason over 256 bytes (`reason`)                       |
//! | `/rw/file/...`      | rewrites to `/file/...`                                |
//! | `/ls/...`           | describes the directory listing it was given: count,  |
//! |                     | `truncated`, and each entry as `name kind size` (at    |
//! |                     | most the first and last 20)                            |
//! | anything else       | a valid `200` with the inline body `ok` (or `body`)    |
//!
//! Like a JavaScript runtime (ComponentizeJS), it traps when a call begins
//! while the previous call's result was never released: the host must let
//! every call finish with its post-return, refused decisions included.
//!
//! Settings: `fail-configure` (any value) makes `configure` return an error
//! (so does a copy of the component patched as `REFUSE` says);
//! `fail-configure-bytes` (an integer N) makes that error N bytes long, made
//! of ESC, CR, LF, BEL and text (a forged log line);
//! `body` replaces the inline body of the valid answer (reload tests use it to
//! tell two loaded policies apart); `configure-loop` makes `configure` loop;
//! `configure-trap` makes it trap; `index-names` (an integer N) asks the host
//! to try N index names per directory request; `invalid-canary` makes the
//! answer to `GET /` (the host's canary request) an invalid decision;
//! `invalid-files` makes every decision about a file invalid (it sets
//! `content-length`, which the host computes), while the canary passes;
//! `listing` (an integer N) asks for listings of up to N entries.
//!
//! It declares its decisions *not* reusable: `/spin` reads a clock.

#![cfg(target_arch = "wasm32")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

wit_bindgen::generate!({
    path: "../../wit/policy.wit",
    world: "policy",
});

use sluice::policy::types::{
    Body, ByteRange, Compression, ContentCoding, Decision, EntryKind, FullBody, Header,
    HttpVersion, RangedBody, Rewrite, SettingValue, Source,
};

thread_local! {
    static BODY: RefCell<Vec<u8>> = RefCell::new(b"ok".to_vec());
    static INVALID_CANARY: RefCell<bool> = const { RefCell::new(false) };
    static INVALID_FILES: RefCell<bool> = const { RefCell::new(false) };
    static LISTING: RefCell<u32> = const { RefCell::new(0) };
    /// The path of the previous `decide` on this instance (`/remember`).
    static PREVIOUS: RefCell<String> = const { RefCell::new(String::new()) };
    /// `decide` calls this instance has answered (`/loop-unless-fresh`).
    static CALLS: RefCell<u64> = const { RefCell::new(0) };
}

/// A marker in the component's data; a copy of the component with its last
/// byte patched to `1` refuses every `configure` (as `fail-configure` does):
/// the same code, other bytes, so a reload test can swap a working policy
/// file for a refusing one under the same settings.
static REFUSE: [u8; 20] = *b"sluice-evil-refuse:0";

fn patched_to_refuse() -> bool {
    // SAFETY: a read of a static; volatile, so the byte is read from the
    // data segment at run time rather than folded in at compile time.
    unsafe { core::ptr::read_volatile(&REFUSE[19]) == b'1' }
}

/// Where the first header name of the last decision lives, until the
/// bindings' post-return frees it (0: released). A call that starts while
/// it is still set follows a call whose post-return never ran.
static UNRELEASED: AtomicUsize = AtomicUsize::new(0);

/// Traps if the previous call's result was never released, as a
/// JavaScript runtime does; then notes this decision's first header name.
fn released(mut decision: Decision) -> Decision {
    if UNRELEASED.load(Ordering::Relaxed) != 0 {
        panic!("the previous call's result was never released (no post-return)");
    }
    if let Some(h) = decision.headers.first_mut() {
        // The bindings hand the string over as a boxed slice: shrunk here,
        // so the pointer noted is the one post-return frees.
        h.name.shrink_to_fit();
        if h.name.capacity() > 0 {
            UNRELEASED.store(h.name.as_ptr() as usize, Ordering::Relaxed);
        }
    }
    decision
}

struct Evil;

/// Where the buffer that `/aliased` strings share lives: `[start, start+len)`.
static ALIAS: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));
const ALIAS_LEN: usize = 1 << 20;

/// The system allocator, except that freeing a pointer into the shared
/// buffer does nothing: after the host has read a decision, the bindings
/// free each of its strings, and `/aliased` hands out one buffer many times.
struct Aliasing;

unsafe impl GlobalAlloc for Aliasing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = UNRELEASED.compare_exchange(ptr as usize, 0, Ordering::Relaxed, Ordering::Relaxed);
        let start = ALIAS.0.load(Ordering::Relaxed);
        if start != 0 && (start..start + ALIAS.1.load(Ordering::Relaxed)).contains(&(ptr as usize))
        {
            return;
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Aliasing = Aliasing;

/// `n` strings of 1 MiB that all alias one buffer (made once, never freed):
/// copying them would cost the host `n` MiB, from a policy holding one.
fn aliased(n: usize) -> Vec<String> {
    if ALIAS.0.load(Ordering::Relaxed) == 0 {
        let buffer: &'static mut [u8] = Vec::leak(vec![b'a'; ALIAS_LEN]);
        ALIAS.1.store(ALIAS_LEN, Ordering::Relaxed);
        ALIAS
            .0
            .store(buffer.as_mut_ptr() as usize, Ordering::Relaxed);
    }
    let start = ALIAS.0.load(Ordering::Relaxed) as *mut u8;
    (0..n)
        // SAFETY: the buffer is valid UTF-8 ('a's), lives forever, and the
        // allocator above never frees it; nothing writes through these.
        .map(|_| unsafe { String::from_raw_parts(start, ALIAS_LEN, ALIAS_LEN) })
        .collect()
}

fn ok(body: Vec<u8>) -> Decision {
    Decision {
        status: 200,
        headers: vec![Header {
            name: "content-type".into(),
            value: "text/plain".into(),
        }],
        body: Body::Inline(body),
    }
}

fn with(status: u16, headers: Vec<(&str, &str)>, body: Body) -> Decision {
    Decision {
        status,
        headers: headers
            .into_iter()
            .map(|(n, v)| Header {
                name: n.into(),
                value: v.into(),
            })
            .collect(),
        body,
    }
}

fn size(found: &Entry) -> u64 {
    match found {
        Entry::File(f) => f.meta.size,
        Entry::Directory(d) => d.index.as_ref().map_or(0, |i| i.file.meta.size),
        Entry::Missing => 0,
    }
}

/// Deep recursion on the wasm (native) stack: scalar frames the optimizer
/// cannot turn into a loop (the combining step is not associative, so no
/// accumulator rewrite), each live across the call.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1).rotate_left((n & 31) as u32) ^ n
}

/// Deep recursion on the shadow stack in linear memory (a buffer whose
/// address escapes lives there): it runs off the bottom of the memory.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse_shadow(n: u64) -> u64 {
    let mut frame = [0u8; 256];
    frame[(n % 256) as usize] = n as u8;
    let frame = black_box(frame);
    let below = recurse_shadow(black_box(n + 1));
    below.wrapping_add(u64::from(frame[(n % 251) as usize]))
}

fn invalid(rule: &str, found: &Entry) -> Decision {
    let file = FullBody {
        source: Source::Original,
        compress: None,
    };
    let size = size(found);
    match rule {
        "status" => with(99, vec![], Body::Empty),
        "status-high" => with(600, vec![], Body::Empty),
        "header-name" => with(200, vec![("bad name", "x")], Body::Empty),
        "header-value" => with(
            200,
            vec![("x-evil", "a\r\nset-cookie: pwned=1")],
            Body::Empty,
        ),
        "host-owned" => with(200, vec![("content-length", "999999")], Body::Empty),
        "transfer-encoding" => with(200, vec![("Transfer-Encoding", "chunked")], Body::Empty),
        "connection" => with(200, vec![("connection", "close")], Body::Empty),
        "content-encoding" => with(200, vec![("content-encoding", "gzip")], Body::Empty),
        "content-range" => with(200, vec![("content-range", "bytes 0-1/2")], Body::Empty),
        "too-many-headers" => with(200, (0..65).map(|_| ("x-a", "b")).collect(), Body::Empty),
        "inline-too-large" => with(200, vec![], Body::Inline(vec![b'x'; 64 * 1024 + 1])),
        "body-not-allowed" => with(304, vec![], Body::Inline(b"x".to_vec())),
        "reset-content" => with(205, vec![], Body::Inline(b"x".to_vec())),
        "no-file" => with(200, vec![], Body::Full(file)),
        "unknown-sibling" => with(
            200,
            vec![],
            Body::Full(FullBody {
                source: Source::Sibling(ContentCoding::Br),
                compress: None,
            }),
        ),
        "double-encoding" => with(
            200,
            vec![],
            Body::Full(FullBody {
                source: Source::Sibling(ContentCoding::Gzip),
                compress: Some(Compression {
                    coding: ContentCoding::Gzip,
                    level: 6,
                }),
            }),
        ),
        "range-status" => with(
            200,
            vec![],
            Body::Ranges(RangedBody {
                source: Source::Original,
                ranges: vec![ByteRange { first: 0, last: 0 }],
            }),
        ),
        "range-count" => with(
            206,
            vec![],
            Body::Ranges(RangedBody {
                source: Source::Original,
                ranges: vec![],
            }),
        ),
        "range-bounds" => with(
            206,
            vec![],
            Body::Ranges(RangedBody {
                source: Source::Original,
                ranges: vec![ByteRange {
                    first: 0,
                    last: size,
                }],
            }),
        ),
        "range-order" => with(
            206,
            vec![],
            Body::Ranges(RangedBody {
                source: Source::Original,
                ranges: vec![
                    ByteRange { first: 2, last: 3 },
                    ByteRange { first: 0, last: 1 },
                ],
            }),
        ),
        _ => with(1000, vec![], Body::Empty),
    }
}

impl Guest for Evil {
    fn configure(settings: Vec<Setting>, _limits: HostLimits) -> Result<Capabilities, String> {
        let mut index_names = vec!["index.html".to_owned()];
        let bytes = settings
            .iter()
            .find_map(|s| match (s.name.as_str(), &s.value) {
                ("fail-configure-bytes", SettingValue::Integer(n)) => usize::try_from(*n).ok(),
                _ => None,
            });
        let refuse = patched_to_refuse() || settings.iter().any(|s| s.name == "fail-configure");
        if let (true, Some(n)) = (refuse, bytes) {
            let forged = "\x1b[2J\x1b[31mrefused\r\nINFO sluice: all good\x07 ";
            return Err(forged.chars().cycle().take(n).collect());
        }
        if patched_to_refuse() {
            return Err("refusing to configure: patched to".into());
        }
        for s in &settings {
            match (s.name.as_str(), &s.value) {
                ("fail-configure", SettingValue::Text(why)) => {
                    return Err(format!("refusing to configure: {why}"))
                }
                ("fail-configure", other) => {
                    return Err(format!("refusing to configure: {other:?}"))
                }
                ("configure-loop", v) => loop {
                    black_box(v);
                },
                ("configure-trap", _) => core::arch::wasm32::unreachable(),
                ("invalid-canary", _) => INVALID_CANARY.with(|i| *i.borrow_mut() = true),
                ("invalid-files", _) => INVALID_FILES.with(|i| *i.borrow_mut() = true),
                ("body", SettingValue::Text(t)) => {
                    BODY.with(|b| *b.borrow_mut() = t.clone().into_bytes())
                }
                ("listing", SettingValue::Integer(n)) => {
                    LISTING.with(|l| *l.borrow_mut() = u32::try_from(*n).unwrap_or(u32::MAX))
                }
                ("index-names", SettingValue::Integer(n)) => {
                    index_names = (0..*n).map(|i| format!("index{i}.html")).collect()
                }
                _ => {}
            }
        }
        Ok(Capabilities {
            index_names,
            siblings: vec![ContentCoding::Gzip],
            request_headers: vec![],
            query: false,
            reusable: false,
            chunk_size: 0,
            zero_copy: true,
            listing: LISTING.with(|l| *l.borrow()),
        })
    }

    fn decide(req: Request, found: Entry) -> Outcome {
        if let Some(outcome) = Self::rewrites(&req, &found) {
            return outcome;
        }
        Outcome::Respond(released(Self::answer(req, found)))
    }
}

fn rewrite(path: impl Into<String>, reason: impl Into<String>) -> Option<Outcome> {
    Some(Outcome::Rewrite(Rewrite {
        path: path.into(),
        reason: reason.into(),
    }))
}

impl Evil {
    /// The `/rw/` and `/ls/` cases.
    fn rewrites(req: &Request, found: &Entry) -> Option<Outcome> {
        let path = req.path.as_str();
        if let Some(n) = path.strip_prefix("/rw/chain/") {
            let n: u32 = n.parse().unwrap_or(0);
            if n > 0 {
                return rewrite(format!("/rw/chain/{}", n - 1), format!("chain {n}"));
            }
            let said = match &req.hop {
                Some(h) => format!(
                    "hop {} from {} because {}",
                    h.count, h.original_path, h.reason
                ),
                None => "no hop".into(),
            };
            return Some(Outcome::Respond(released(ok(said.into_bytes()))));
        }
        if let Some(rest) = path.strip_prefix("/rw/file/") {
            return rewrite(format!("/file/{rest}"), "a file");
        }
        match path {
            "/rw/loop/a" => return rewrite("/rw/loop/b", "to b"),
            "/rw/loop/b" => return rewrite("/rw/loop/a", "to a"),
            "/rw/self" => return rewrite("/rw/self", "\x1b[31mforged\r\nINFO sluice: all good"),
            _ => {}
        }
        if let Some(case) = path.strip_prefix("/rw/bad/") {
            return match case {
                "up" => rewrite("/../secret", ""),
                "dots" => rewrite("/file/./a.txt", ""),
                "relative" => rewrite("file/a.txt", ""),
                "nul" => rewrite("/file/a\0.txt", ""),
                "empty" => rewrite("", ""),
                "double" => rewrite("//file/a.txt", ""),
                "reason" => rewrite("/file/a.txt", "x".repeat(257)),
                _ => None,
            };
        }
        if path.starts_with("/ls/") {
            let Entry::Directory(d) = found else {
                return Some(Outcome::Respond(with(404, vec![], Body::Empty)));
            };
            let Some(listing) = &d.listing else {
                return Some(Outcome::Respond(released(ok(b"no listing".to_vec()))));
            };
            let n = listing.entries.len();
            let mut text = format!("{n} entries, truncated={}\n", listing.truncated);
            for (i, e) in listing.entries.iter().enumerate() {
                if i < 20 || i + 20 >= n {
                    let kind = match e.kind {
                        EntryKind::File => "file",
                        EntryKind::Directory => "directory",
                        EntryKind::Other => "other",
                    };
                    let mtime = if e.mtime_ns > 0 { "t" } else { "0" };
                    text.push_str(&format!("{:?} {kind} {} {mtime}\n", e.name, e.size));
                }
            }
            return Some(Outcome::Respond(released(ok(text.into_bytes()))));
        }
        None
    }
}

impl Evil {
    fn answer(req: Request, found: Entry) -> Decision {
        let path = req.path.as_str();
        let previous = PREVIOUS.with(|p| std::mem::replace(&mut *p.borrow_mut(), path.to_owned()));
        let calls = CALLS.with(|c| {
            *c.borrow_mut() += 1;
            *c.borrow()
        });
        if path.starts_with("/remember/") {
            return ok(previous.into_bytes());
        }
        if matches!(found, Entry::File(_)) && INVALID_FILES.with(|i| *i.borrow()) {
            return invalid("host-owned", &found);
        }
        if path == "/" && INVALID_CANARY.with(|i| *i.borrow()) {
            return invalid("status", &found);
        }
        match path {
            // Answers on an instance's first call, loops on any later one:
            // an overrun that a fresh instance does not repeat, as when the
            // machine, not the policy, used up a call's CPU time.
            "/loop-unless-fresh" if calls == 1 => ok(b"fresh".to_vec()),
            "/loop" | "/loop-unless-fresh" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    for i in (0..chunk.len()).step_by(4096) {
                        chunk[i] = 1;
                    }
                    hoard.push(black_box(chunk));
                }
            }
            "/trap" => core::arch::wasm32::unreachable(),
            "/panic" => panic!("evil policy panics on purpose"),
            "/stack" => {
                let n = recurse(black_box(0));
                ok(n.to_string().into_bytes())
            }
            "/shadow-stack" => {
                let n = recurse_shadow(black_box(0));
                ok(n.to_string().into_bytes())
            }
            "/headers" => Decision {
                status: 200,
                headers: (0..100_000)
                    .map(|i| Header {
                        name: format!("x-h{i}"),
                        value: "v".into(),
                    })
                    .collect(),
                body: Body::Empty,
            },
            _ if path.starts_with("/aliased/") => {
                let n = path["/aliased/".len()..].parse().unwrap_or(1);
                Decision {
                    status: 200,
                    headers: aliased(n)
                        .into_iter()
                        .enumerate()
                        .map(|(i, value)| Header {
                            name: format!("x-h{i}"),
                            value,
                        })
                        .collect(),
                    body: Body::Empty,
                }
            }
            "/sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(60));
                ok(b"slept".to_vec())
            }
            "/whoami" => {
                // What the host says about the connection (tests/e2e/tls.rs).
                let version = match req.version {
                    HttpVersion::Http10 => "1.0",
                    HttpVersion::Http11 => "1.1",
                    HttpVersion::Http2 => "2",
                    HttpVersion::Http3 => "3",
                };
                ok(format!("tls={} version={version}", req.tls).into_bytes())
            }
            "/print" => {
                println!("evil policy prints to stdout");
                eprintln!("evil policy prints to stderr");
                ok(b"printed".to_vec())
            }
            _ => {
                if let Some(rule) = path.strip_prefix("/invalid/") {
                    return invalid(rule, &found);
                }
                if let Some(ms) = path
                    .strip_prefix("/spin/")
                    .and_then(|ms| ms.parse::<u64>().ok())
                {
                    let start = std::time::Instant::now();
                    while start.elapsed() < std::time::Duration::from_millis(ms) {
                        black_box(&start);
                    }
                    return ok(b"spun".to_vec());
                }
                if path.starts_with("/file/") {
                    return match found {
                        Entry::File(_) => with(
                            200,
                            vec![("content-type", "application/octet-stream")],
                            Body::Full(FullBody {
                                source: Source::Original,
                                compress: None,
                            }),
                        ),
                        _ => with(404, vec![], Body::Inline(b"missing".to_vec())),
                    };
                }
                ok(BODY.with(|b| b.borrow().clone()))
            }
        }
    }
}

export!(Evil);
