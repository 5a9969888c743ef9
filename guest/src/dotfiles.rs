//! Hidden paths: any segment starting with `.` (`/.git/config`, `/.env`,
//! `/app/.DS_Store`). They are answered 404, exactly like a missing file, so
//! a client cannot tell that they exist.

use crate::config::{Config, Dotfiles};

/// Whether the request path must be answered as if nothing were there.
///
/// `/.well-known/` (RFC 8615: ACME challenges, `security.txt`, …) is served
/// when `well-known` is on; only at the top, where RFC 8615 puts it, and dot
/// segments below it are still hidden.
pub fn is_hidden(config: &Config, path: &str) -> bool {
    if config.dotfiles == Dotfiles::Allow {
        return false;
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let mut first = true;
    segments.any(|segment| {
        let allowed = first && config.well_known && segment == ".well-known";
        first = false;
        segment.starts_with('.') && !allowed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_hidden_by_default() {
        let config = Config::default();
        for (path, hidden) in [
            ("/", false),
            ("/index.html", false),
            ("/a/b.c/d", false),
            ("/file.", false),
            ("/.env", true),
            ("/.git/config", true),
            ("/.git/", true),
            ("/app/.DS_Store", true),
            ("/a/.hidden/b.txt", true),
            ("/.well-known/security.txt", false),
            ("/.well-known/acme-challenge/token", false),
            ("/.well-known/", false),
            ("/.well-known/.secret", true),
            ("/a/.well-known/x", true),
            ("/.Well-Known/x", true),
        ] {
            assert_eq!(is_hidden(&config, path), hidden, "{path}");
        }
    }

    #[test]
    fn well_known_can_be_hidden_too() {
        let config = Config {
            well_known: false,
            ..Config::default()
        };
        assert!(is_hidden(&config, "/.well-known/security.txt"));
    }

    #[test]
    fn allow_serves_everything() {
        let config = Config {
            dotfiles: Dotfiles::Allow,
            well_known: false,
            ..Config::default()
        };
        assert!(!is_hidden(&config, "/.env"));
        assert!(!is_hidden(&config, "/.well-known/x"));
    }
}
