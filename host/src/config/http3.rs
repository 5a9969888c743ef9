//! `[http3]`: HTTP/3 over QUIC on the TLS listener's address (see
//! `crate::http3` and `crate::listener::quic`), and the bounds it is held to.

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// HTTP/3 settings. Off by default, as in nginx (`listen ... quic`) and unlike
/// Caddy: it opens a UDP port the operator's firewall must let through, costs
/// more CPU per byte than HTTP/2 over TCP (acknowledgements and packet
/// encryption in user space: BENCHMARKS.md), and once `Alt-Svc` advertises it
/// browsers switch to it, so it is turned on knowingly.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct Http3Config {
    /// Serve HTTP/3 on a UDP socket at the TLS listener's address (needs
    /// `tls-cert` and `tls-key`).
    pub enabled: bool,
    /// `ma` of the `Alt-Svc: h3=":PORT"` header sent on HTTPS responses over
    /// HTTP/1.1 and HTTP/2, seconds; 0 sends no `Alt-Svc` (HTTP/3 is then only
    /// found by clients that try it).
    pub alt_svc_max_age: u64,
    /// QUIC connections open at once; each also takes a slot of the
    /// top-level `max-connections`. Bounds what quinn buffers host-wide:
    /// `max-connections` x `send-window`.
    pub max_connections: usize,
    /// Request streams a client may have open at once on one connection.
    pub max_streams: u32,
    /// A connection that receives nothing (not even an acknowledgement) for
    /// this long is closed, milliseconds (QUIC's idle timeout, RFC 9308's
    /// 30 s; the lower of ours and the client's applies).
    pub idle_timeout_ms: u64,
    /// Bytes of response data one connection may have sent and not yet had
    /// acknowledged, or queued in quinn: its send buffer.
    pub send_window: ByteSize,
    /// Handshakes in progress at once past which a new client must first prove
    /// its address (a QUIC Retry, one more round trip): spoofed sources cannot,
    /// and so cost nothing more than the Retry packet.
    pub retry_handshakes: usize,
}

impl Default for Http3Config {
    fn default() -> Self {
        Http3Config {
            enabled: false,
            alt_svc_max_age: 86_400,
            max_connections: 1_000,
            max_streams: 100,
            idle_timeout_ms: 30_000,
            send_window: ByteSize(1 << 20),
            retry_handshakes: 64,
        }
    }
}
