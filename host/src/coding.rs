//! Content codings the host can serve precompressed or produce on the fly.

/// A content coding (RFC 9110 §8.4.1) other than identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Gzip,
    Br,
    Zstd,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// A distinct bit per coding, for small sets of codings.
    pub fn bit(self) -> u8 {
        match self {
            Coding::Gzip => 1,
            Coding::Br => 2,
            Coding::Zstd => 4,
        }
    }

    /// The file-name suffix of a precompressed sibling.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Gzip => ".gz",
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
        }
    }
}
