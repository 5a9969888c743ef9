//! Content codings the host can serve precompressed or produce on the fly.
//!
//! The WIT's `content-coding` is the host's type: one enum, described here by
//! one table. Adding a coding is a case in `wit/policy.wit`, a row in
//! [`TABLE`], and its encoder in `transfer::compress`.

/// A content coding (RFC 9110 §8.4.1) other than identity.
pub use crate::contract::wit::ContentCoding as Coding;

/// What the host knows of one coding.
struct Info {
    coding: Coding,
    /// The `Content-Encoding` token.
    token: &'static str,
    /// The file-name suffix of a precompressed sibling.
    suffix: &'static str,
}

/// Every coding, in the WIT's order (so a coding indexes its own row).
const TABLE: [Info; 3] = [
    Info {
        coding: Coding::Gzip,
        token: "gzip",
        suffix: ".gz",
    },
    Info {
        coding: Coding::Br,
        token: "br",
        suffix: ".br",
    },
    Info {
        coding: Coding::Zstd,
        token: "zstd",
        suffix: ".zst",
    },
];

impl Coding {
    fn info(self) -> &'static Info {
        let info = &TABLE[self as usize];
        debug_assert!(info.coding == self, "TABLE follows the WIT's order");
        info
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        self.info().token
    }

    /// The file-name suffix of a precompressed sibling.
    pub fn suffix(self) -> &'static str {
        self.info().suffix
    }

    /// A distinct bit per coding, for small sets of codings.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_follows_the_wit_order() {
        for (i, info) in TABLE.iter().enumerate() {
            assert_eq!(info.coding as usize, i);
            assert_eq!(info.coding.token(), info.token);
        }
    }
}
