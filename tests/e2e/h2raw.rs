//! HTTP/2 written by hand (RFC 9113 frames, RFC 7541 literals), for clients
//! that misbehave in ways a library refuses to: windows never granted,
//! sockets never read, floods of resets, CONTINUATIONs, PINGs, SETTINGS.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const INITIAL_WINDOW_SIZE: u16 = 0x4;

pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame: length, type, flags, stream, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A SETTINGS frame with these parameters.
pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in params {
        payload.extend(id.to_be_bytes());
        payload.extend(value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// A HPACK string literal, not Huffman-coded (lengths below 127).
fn literal(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend(s);
}

/// The header block of `GET path` for `localhost` over http: `:method GET`
/// and `:scheme http` from the static table (2, 6), `:authority` (1) and
/// `:path` (4) as literals without indexing.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x01];
    literal(&mut block, b"localhost");
    block.push(0x04);
    literal(&mut block, path.as_bytes());
    block
}

/// HEADERS (END_STREAM | END_HEADERS) for `GET path` on `stream`.
pub fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &get_block(path))
}

/// A window update of `n` on `stream` (0: the connection).
pub fn window_update(stream: u32, n: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &n.to_be_bytes())
}

/// A raw HTTP/2 connection.
pub struct Conn {
    pub tcp: TcpStream,
}

impl Conn {
    /// Connects, sends the preface and a SETTINGS frame with `params`.
    pub fn open(addr: SocketAddr, params: &[(u16, u32)]) -> Conn {
        let tcp = TcpStream::connect(addr).unwrap();
        let mut conn = Conn { tcp };
        let mut out = PREFACE.to_vec();
        out.extend(settings(params));
        conn.send(&out);
        conn
    }

    /// Writes all of `bytes`; `false` if the server has closed.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).is_ok()
    }

    /// Reads frames on another thread (answering SETTINGS and, if asked,
    /// PINGs) until the connection ends or `stop` is set.
    pub fn drain(&self, answer_pings: bool) -> Drain {
        let mut reader = self.tcp.try_clone().unwrap();
        let mut writer = self.tcp.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 256 << 10];
                while !stop.load(Ordering::Relaxed) {
                    match reader.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue
                        }
                        Err(_) => break,
                    }
                    let mut at = 0;
                    while buf.len() >= at + 9 {
                        let len =
                            u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
                        if buf.len() < at + 9 + len {
                            break;
                        }
                        let (kind, flags) = (buf[at + 3], buf[at + 4]);
                        let stream = u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap())
                            & 0x7fff_ffff;
                        let payload = &buf[at + 9..at + 9 + len];
                        seen.lock().unwrap().record(kind, flags, stream, payload);
                        match (kind, flags & ACK) {
                            (SETTINGS, 0) => {
                                let _ = writer.write_all(&frame(SETTINGS, ACK, 0, &[]));
                            }
                            (PING, 0) if answer_pings => {
                                let _ = writer.write_all(&frame(PING, ACK, 0, payload));
                            }
                            _ => {}
                        }
                        at += 9 + len;
                    }
                    buf.drain(..at);
                }
                seen.lock().unwrap().closed = true;
            })
        };
        Drain {
            seen,
            stop,
            handle: Some(handle),
        }
    }
}

/// What a [`Conn::drain`] saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Frames by type.
    pub frames: HashMap<u8, usize>,
    /// DATA payload bytes.
    pub data: usize,
    /// RST_STREAM frames by error code.
    pub resets: HashMap<u32, usize>,
    /// Streams that got a HEADERS frame (a response).
    pub responses: usize,
    /// The last GOAWAY's error code.
    pub goaway: Option<u32>,
    /// The server closed the connection.
    pub closed: bool,
}

impl Seen {
    fn record(&mut self, kind: u8, _flags: u8, _stream: u32, payload: &[u8]) {
        *self.frames.entry(kind).or_default() += 1;
        match kind {
            DATA => self.data += payload.len(),
            HEADERS => self.responses += 1,
            RST_STREAM if payload.len() >= 4 => {
                let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                *self.resets.entry(code).or_default() += 1;
            }
            GOAWAY if payload.len() >= 8 => {
                self.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            _ => {}
        }
    }
}

/// A reader thread; stopped when dropped.
pub struct Drain {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drain {
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
