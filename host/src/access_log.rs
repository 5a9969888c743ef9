//! The access log: one line per response, written off the request path.
//!
//! A response's line is a [`Record`]: it is made when the handler has
//! answered (status, virtual host, transfer path, policy time known), counts
//! the body bytes as they leave (it is the body's [`Meter`]), and its line
//! is formatted when the last holder lets go of it: when the body ended or
//! was dropped (a client that went away mid-body logs what was sent), and on
//! the zero-copy path when the connection's I/O has sent or dropped the file
//! regions. The worker formats the line (with a per-thread scratch buffer
//! and time stamps) and appends it to one shared buffer; a dedicated thread
//! takes the whole buffer every 100 ms while busy and writes it (see
//! [`write_lines`]). So a line costs a worker no allocation that another
//! thread frees, no wake-up and no system call. If the writer falls behind
//! by [`MAX_PENDING`] bytes, lines are dropped and counted (a full disk must
//! not stall the server), and the count is reported in the server's log.
//!
//! Formats (`access-log-format`):
//! - `combined`: exactly nginx's `combined` —
//!   `$remote_addr - $remote_user [$time_local] "$request" $status
//!   $body_bytes_sent "$http_referer" "$http_user_agent"` — with sluice's
//!   fields appended: ` vhost="NAME" transfer=PATH policy_us=N` (`-` where
//!   there is none). The time is UTC (`+0000`). Strings are escaped as nginx
//!   does: `"`, `\`, control and non-ASCII bytes become `\xHH`.
//! - `json`: one object per line with the same fields (see [`JsonLine`]).

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use crate::config::{AccessLogFormat, AccessLogTarget};
use crate::transfer::{Meter, TransferPath};

/// Formatted lines that may wait for the writer, bytes; past that they are
/// dropped (at `TICK`, room for about 300,000 responses a second).
const MAX_PENDING: usize = 8 << 20;

/// How often a busy writer writes out what queued up.
const TICK: Duration = Duration::from_millis(100);

/// Why the access log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("access-log: cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("access-log: cannot start the writer thread: {0}")]
    Thread(io::Error),
}

/// The handle requests log through (cheap to clone).
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

/// What the workers and the writer share.
struct Shared {
    format: AccessLogFormat,
    pending: Mutex<Pending>,
    /// Wakes an idle writer (a first line, or a flush).
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    /// Formatted lines, in the order their responses ended.
    lines: Vec<u8>,
    /// Lines dropped because `lines` was full.
    dropped: u64,
    /// The writer is blocked waiting for work (not merely between ticks).
    idle: bool,
    /// Answer these once what came before them is written and flushed.
    flushes: Vec<SyncSender<()>>,
}

thread_local! {
    /// Each worker's line being formatted, and its cached time stamps.
    static SCRATCH: RefCell<(Vec<u8>, Stamps)> = RefCell::new((Vec::with_capacity(512), Stamps::default()));
}

/// What one line says.
struct Entry {
    time: SystemTime,
    peer: Option<SocketAddr>,
    method: Method,
    target: Box<str>,
    version: Version,
    status: u16,
    referer: Option<Box<[u8]>>,
    user_agent: Option<Box<[u8]>>,
    vhost: Arc<str>,
    transfer: Option<TransferPath>,
    policy_time: Option<Duration>,
    bytes: u64,
}

/// The request's side of a line, taken before the request is handled.
pub struct RequestLine {
    peer: Option<SocketAddr>,
    method: Method,
    target: Box<str>,
    version: Version,
    referer: Option<Box<[u8]>>,
    user_agent: Option<Box<[u8]>>,
}

impl RequestLine {
    /// Copies what the line needs. Copies, not clones: the URI and header
    /// values are slices of the connection's read buffer, and a clone kept
    /// until the line is written would keep that buffer from being reused,
    /// so hyper would allocate a new one for every request.
    pub fn new<B>(req: &http::Request<B>, peer: Option<SocketAddr>) -> RequestLine {
        let header = |h: &HeaderMap, name| h.get(name).map(|v: &HeaderValue| v.as_bytes().into());
        RequestLine {
            peer,
            method: req.method().clone(),
            target: target(req.uri()).into(),
            version: req.version(),
            referer: header(req.headers(), http::header::REFERER),
            user_agent: header(req.headers(), http::header::USER_AGENT),
        }
    }
}

/// What the server did, for the line.
pub struct Answer {
    pub status: u16,
    pub vhost: Arc<str>,
    pub transfer: Option<TransferPath>,
    pub policy_time: Option<Duration>,
}

/// One response's line in the making: counts the body bytes sent, and is
/// written when dropped.
pub struct Record {
    entry: Entry,
    sent: AtomicU64,
    log: AccessLog,
}

impl Meter for Record {
    fn add(&self, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let entry = &mut self.entry;
        entry.bytes = *self.sent.get_mut();
        entry.time = SystemTime::now();
        let shared = &self.log.shared;
        SCRATCH.with_borrow_mut(|(line, stamps)| {
            line.clear();
            match shared.format {
                AccessLogFormat::Combined => combined(line, entry, stamps),
                AccessLogFormat::Json => json(line, entry, stamps),
            }
            let mut pending = shared.pending.lock().expect("not poisoned");
            if pending.lines.len() + line.len() > MAX_PENDING {
                pending.dropped += 1;
                return;
            }
            pending.lines.extend_from_slice(line);
            if pending.idle {
                pending.idle = false;
                shared.wake.notify_one();
            }
        });
    }
}

impl AccessLog {
    /// Opens the target and starts the writer thread; `None` when the log is
    /// off.
    pub fn open(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> Result<Option<AccessLog>, AccessLogError> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stderr => Box::new(io::stderr()),
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AccessLogError::Open {
                        path: path.clone(),
                        source,
                    })?,
            ),
        };
        let shared = Arc::new(Shared {
            format,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        {
            // The writer holds only a weak reference, so it ends when the
            // last handle is gone.
            let shared = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("sluice-access-log".into())
                .spawn(move || write_lines(&shared, out))
                .map_err(AccessLogError::Thread)?;
        }
        Ok(Some(AccessLog { shared }))
    }

    /// The record for one response; attach it to the body as its meter.
    pub fn record(&self, request: RequestLine, answer: Answer) -> Arc<Record> {
        Arc::new(Record {
            entry: Entry {
                time: SystemTime::UNIX_EPOCH,
                peer: request.peer,
                method: request.method,
                target: request.target,
                version: request.version,
                status: answer.status,
                referer: request.referer,
                user_agent: request.user_agent,
                vhost: answer.vhost,
                transfer: answer.transfer,
                policy_time: answer.policy_time,
                bytes: 0,
            },
            sent: AtomicU64::new(0),
            log: self.clone(),
        })
    }

    /// Waits (up to `limit`) until every line handed over so far is written
    /// and flushed: call it at shutdown, after the connections are closed.
    pub fn flush(&self, limit: Duration) -> bool {
        let (ack, done) = mpsc::sync_channel(1);
        {
            let mut pending = self.shared.pending.lock().expect("not poisoned");
            pending.flushes.push(ack);
            pending.idle = false;
            self.shared.wake.notify_one();
        }
        done.recv_timeout(limit).is_ok()
    }
}

/// The writer thread. Idle, it waits to be woken by a line or a flush;
/// busy, it takes every line formatted since its last look, writes them
/// with one `write`, flushes, and sleeps a tick. So a request costs the
/// workers no wake-up of this thread (only the first after a quiet spell
/// wakes it) and no write of its own, and the log trails the traffic by at
/// most a tick; nginx's `access_log ... buffer= flush=` trades the same way.
fn write_lines(shared: &std::sync::Weak<Shared>, mut out: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(64 << 10);
    let mut failing = false;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (flushes, dropped) = {
            let mut pending = shared.pending.lock().expect("not poisoned");
            while pending.lines.is_empty() && pending.flushes.is_empty() {
                pending.idle = true;
                // Wake now and then to notice that the server is gone.
                pending = shared
                    .wake
                    .wait_timeout(pending, Duration::from_secs(1))
                    .expect("not poisoned")
                    .0;
                if Arc::strong_count(&shared) == 1 {
                    return;
                }
            }
            pending.idle = false;
            // Swap buffers: the workers keep appending to the one this
            // thread has just emptied, so neither side allocates.
            std::mem::swap(&mut pending.lines, &mut batch);
            (
                std::mem::take(&mut pending.flushes),
                std::mem::take(&mut pending.dropped),
            )
        };
        drop(shared);
        let result = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        match result {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "cannot write the access log");
            }
            Err(_) => {}
        }
        if dropped > 0 {
            tracing::warn!(
                lines = dropped,
                "access log writer fell behind; lines dropped"
            );
        }
        let idle_flush = !flushes.is_empty();
        for ack in flushes {
            let _ = ack.send(());
        }
        if !idle_flush {
            std::thread::sleep(TICK);
        }
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

/// The request target as the client sent it in origin form (an HTTP/2
/// request's URI also has the scheme and authority, which nginx leaves out).
fn target(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// nginx's default log escaping: `"`, `\`, control characters and bytes
/// outside ASCII become `\xHH`.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// The time formatted both ways, redone only when the second changes
/// (nginx caches its time strings the same way): formatting a date is most
/// of what a line costs.
#[derive(Default)]
struct Stamps {
    second: Option<u64>,
    combined: Vec<u8>,
    rfc3339: String,
}

impl Stamps {
    fn at(&mut self, t: SystemTime) -> &Stamps {
        const TIME: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        );
        let second = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second != Some(second) {
            let dt =
                time::OffsetDateTime::from(SystemTime::UNIX_EPOCH + Duration::from_secs(second));
            self.combined.clear();
            let _ = dt.format_into(&mut self.combined, TIME);
            self.rfc3339 = dt
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            self.second = Some(second);
        }
        self
    }
}

fn combined(out: &mut Vec<u8>, e: &Entry, stamps: &mut Stamps) {
    match e.peer {
        Some(p) => {
            let _ = write!(out, "{}", p.ip());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(&stamps.at(e.time).combined);
    out.extend_from_slice(b"] \"");
    escape(out, e.method.as_str().as_bytes());
    out.push(b' ');
    escape(out, e.target.as_bytes());
    let _ = write!(
        out,
        " {}\" {} {} \"",
        protocol(e.version),
        e.status,
        e.bytes
    );
    let quoted = |out: &mut Vec<u8>, v: &Option<Box<[u8]>>| match v {
        Some(v) => escape(out, v),
        None => out.push(b'-'),
    };
    quoted(out, &e.referer);
    out.extend_from_slice(b"\" \"");
    quoted(out, &e.user_agent);
    out.extend_from_slice(b"\" vhost=\"");
    escape(out, e.vhost.as_bytes());
    out.extend_from_slice(b"\" transfer=");
    out.extend_from_slice(e.transfer.map_or("-", TransferPath::name).as_bytes());
    out.extend_from_slice(b" policy_us=");
    match e.policy_time {
        Some(t) => {
            let _ = write!(out, "{}", t.as_micros());
        }
        None => out.push(b'-'),
    }
    out.push(b'\n');
}

/// A `json` line. Header values that are not UTF-8 are written lossily.
#[derive(serde::Serialize)]
pub struct JsonLine<'a> {
    /// RFC 3339, UTC, to the second.
    pub time: String,
    /// The client's address (IP only, as `$remote_addr`); null when the
    /// embedding server did not say.
    pub remote_addr: Option<String>,
    pub method: &'a str,
    /// The request target (path and query).
    pub uri: &'a str,
    pub protocol: &'static str,
    pub status: u16,
    /// Body bytes handed to the connection (for `sendfile`, sent by it).
    pub bytes_sent: u64,
    pub referer: Option<std::borrow::Cow<'a, str>>,
    pub user_agent: Option<std::borrow::Cow<'a, str>>,
    /// The site that answered: a `[[vhost]]` host, or `(default)`.
    pub vhost: &'a str,
    /// `sendfile`, `copy`, `compressed`, `inline`, or null for no body.
    pub transfer: Option<&'static str>,
    /// Wall time of the policy call in microseconds; null when the policy
    /// was not called (decision-cache hit, or refused before it).
    pub policy_us: Option<u64>,
}

fn json<'a>(out: &mut Vec<u8>, e: &'a Entry, stamps: &mut Stamps) {
    let text = |v: &'a Option<Box<[u8]>>| v.as_deref().map(String::from_utf8_lossy);
    let line = JsonLine {
        time: stamps.at(e.time).rfc3339.clone(),
        remote_addr: e.peer.map(|p| p.ip().to_string()),
        method: e.method.as_str(),
        uri: &e.target,
        protocol: protocol(e.version),
        status: e.status,
        bytes_sent: e.bytes,
        referer: text(&e.referer),
        user_agent: text(&e.user_agent),
        vhost: &e.vhost,
        transfer: e.transfer.map(TransferPath::name),
        policy_us: e
            .policy_time
            .map(|t| u64::try_from(t.as_micros()).unwrap_or(u64::MAX)),
    };
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            // 2000-10-10T13:55:36Z
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136),
            peer: Some("127.0.0.1:5555".parse().unwrap()),
            method: Method::GET,
            target: "/a%20b.txt?x=1".into(),
            version: Version::HTTP_11,
            status: 206,
            referer: None,
            user_agent: Some(b"curl/8 \"q\" \\ \xe9".as_slice().into()),
            vhost: "(default)".into(),
            transfer: Some(TransferPath::Sendfile),
            policy_time: Some(Duration::from_micros(41)),
            bytes: 5,
        }
    }

    #[test]
    fn combined_is_nginx_combined_with_sluice_fields_appended() {
        let mut out = Vec::new();
        combined(&mut out, &entry(), &mut Stamps::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a%20b.txt?x=1 HTTP/1.1\" \
             206 5 \"-\" \"curl/8 \\x22q\\x22 \\x5C \\xE9\" vhost=\"(default)\" transfer=sendfile policy_us=41\n"
        );
        let mut e = entry();
        (e.peer, e.transfer, e.policy_time) = (None, None, None);
        let mut out = Vec::new();
        combined(&mut out, &e, &mut Stamps::default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("- - - ["), "{text}");
        assert!(text.ends_with(" transfer=- policy_us=-\n"), "{text}");
    }

    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        json(&mut out, &entry(), &mut Stamps::default());
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2000-10-10T13:55:36Z");
        assert_eq!(v["remote_addr"], "127.0.0.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["uri"], "/a%20b.txt?x=1");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["status"], 206);
        assert_eq!(v["bytes_sent"], 5);
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["user_agent"], "curl/8 \"q\" \\ \u{fffd}");
        assert_eq!(v["vhost"], "(default)");
        assert_eq!(v["transfer"], "sendfile");
        assert_eq!(v["policy_us"], 41);
    }

    /// A record is written when its last holder drops it, with the bytes
    /// counted until then; `flush` returns once it is in the file.
    #[test]
    fn a_record_is_written_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(
            &AccessLogTarget::File(path.clone()),
            AccessLogFormat::Combined,
        )
        .unwrap()
        .unwrap();
        let req = http::Request::get("/x").body(()).unwrap();
        let answer = || Answer {
            status: 200,
            vhost: "(default)".into(),
            transfer: Some(TransferPath::Copy),
            policy_time: None,
        };
        let record = log.record(RequestLine::new(&req, None), answer());
        let held = record.clone();
        record.add(3);
        drop(record);
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        held.add(4);
        drop(held);
        assert!(log.flush(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"GET /x HTTP/1.1\" 200 7 "), "{text}");
    }
}
