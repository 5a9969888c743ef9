//! Plain-Rust mirror of the WIT types (`wit/policy.wit`), so the policy logic
//! compiles and is unit-tested natively, without wit-bindgen. `component.rs`
//! converts between these and the generated bindings.

/// One header field (`types.header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// `types.http-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http10,
    Http11,
    Http2,
    Http3,
}

/// `types.request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub raw_query: Option<String>,
    pub headers: Vec<Header>,
    pub tls: bool,
    pub version: HttpVersion,
}

impl Request {
    /// Values of every field named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The value of a field that may appear once; `None` if absent. Repeated
    /// fields are joined with ", " as RFC 9110 §5.3 allows for list fields.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.header_values(name).peekable();
        values.peek()?;
        Some(values.collect::<Vec<_>>().join(", "))
    }
}

/// `types.content-coding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentCoding {
    Gzip,
    Br,
    Zstd,
}

impl ContentCoding {
    /// The token used in `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Br => "br",
            ContentCoding::Zstd => "zstd",
        }
    }
}

/// `types.file-meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub device: u64,
}

/// `types.sibling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sibling {
    pub coding: ContentCoding,
    pub meta: FileMeta,
}

/// `types.file-entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub meta: FileMeta,
    pub siblings: Vec<Sibling>,
}

/// `types.index-entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub file: FileEntry,
}

/// `types.entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File(FileEntry),
    Directory { index: Option<IndexEntry> },
}

/// `types.capabilities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub index_names: Vec<String>,
    pub siblings: Vec<ContentCoding>,
}

/// `types.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Original,
    Sibling(ContentCoding),
}

/// `types.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub coding: ContentCoding,
    pub level: i32,
}

/// `types.byte-range` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

/// `types.body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Empty,
    Inline(Vec<u8>),
    Full {
        source: Source,
        compress: Option<Compression>,
    },
    Ranges {
        source: Source,
        ranges: Vec<ByteRange>,
    },
}

/// `types.decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Body,
    pub chunk_size: u32,
    pub zero_copy: bool,
}

impl Decision {
    /// The value of the response field `name`, if the decision sets it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}
