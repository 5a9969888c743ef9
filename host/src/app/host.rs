//! The host a request is for, as virtual hosts are matched and as a TLS
//! connection's certificate is checked against (421): parsed once per
//! request, by the service, and used for both.

use http::Request;

/// The host name a request is for, as virtual hosts are matched: the URI
/// authority (HTTP/2 `:authority`) or the `Host` header, without port or
/// trailing dot, lower-case.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.uri()
        .host()
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map(|h| strip_port(h).trim_end_matches('.').to_ascii_lowercase())
}

/// The host of a `Host` value (RFC 9110 §7.2: `uri-host [":" port]`), IPv6
/// brackets removed. A value that is not one comes back unchanged, so it
/// matches no virtual host.
fn strip_port(host: &str) -> &str {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return host;
    };
    // `Authority` also takes userinfo (`user@`) and a non-numeric port,
    // which a Host value cannot have.
    let name = authority.host();
    let port_ok = host.strip_prefix(name).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    });
    if !port_ok {
        return host;
    }
    let name = &host[..name.len()];
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn strip_port_names_and_ports() {
        for (host, want) in [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("EXAMPLE.com:80", "EXAMPLE.com"),
            // RFC 9110 §7.2: port = *DIGIT, so an empty port is still a port.
            ("example.com:", "example.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("localhost:99999", "localhost"),
        ] {
            assert_eq!(strip_port(host), want, "{host:?}");
        }
    }

    #[test]
    fn strip_port_ipv6_literals_lose_their_brackets() {
        for (host, want) in [
            ("[::1]:8080", "::1"),
            ("[::1]", "::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[fe80::1%25eth0]:80", "fe80::1%25eth0"),
        ] {
            assert_eq!(strip_port(host), want, "{host:?}");
        }
    }

    /// Trailing dots are kept here; the caller trims them after the port is gone.
    #[test]
    fn strip_port_keeps_trailing_dots() {
        assert_eq!(strip_port("example.com."), "example.com.");
        assert_eq!(strip_port("example.com.:8080"), "example.com.");
        assert_eq!(strip_port("example.com..:1"), "example.com..");
    }

    /// Values that are not `uri-host [":" port]` come back unchanged, so they
    /// match no virtual host and the default site answers.
    #[test]
    fn strip_port_leaves_garbage_alone() {
        for host in [
            "",
            "[::1",
            "example.com:http",
            "example.com:80x",
            "user@example.com",
            "example.com/path",
            // Not host[:port] either; before http::uri::Authority these lost
            // their last `:...` ("::1" became ":", "a:1:2" became "a:1"), or
            // everything after a `]`, or kept characters no host name has.
            "::1",
            "a:1:2",
            "example.com:80:90",
            "[::1]junk",
            "[::1]:80:90",
            "user:pw@example.com:80",
            "exa mple.com:80",
            "example.com%41",
        ] {
            assert_eq!(strip_port(host), host, "{host:?}");
        }
    }
}
