//! What a policy asks of the host in `configure` (index names, sibling
//! codings, the request fields it reads, whether its decisions may be
//! reused, its transport), checked against the host's bounds.

use http::HeaderName;

use crate::coding::Coding;
use crate::contract::{wit, Transport, MAX_LISTING};
use crate::policy_text::PolicyText;

/// What `configure` returned, in the current contract's terms (a 0.2.0
/// policy's with `listing` 0); a 0.1.0 policy's capabilities are marked so
/// the caller gives it what 0.1.0 did.
pub(super) enum Configured {
    V0_3(wit::Capabilities),
    V0_1 {
        index_names: Vec<String>,
        siblings: Vec<wit::ContentCoding>,
    },
}

/// A capability a policy asked for that the host does not grant: each is a
/// bound on the work the host does for that policy on every request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("{0} index names, over the limit of {MAX_INDEX_NAMES}")]
    IndexNameCount(usize),
    #[error("index name {0:?} is not a plain file name of at most {MAX_NAME_LEN} bytes")]
    IndexName(PolicyText),
    #[error("{0} request headers, over the limit of {MAX_REQUEST_HEADERS}")]
    RequestHeaderCount(usize),
    #[error("request header {0:?} is not a lower-case field name")]
    RequestHeader(PolicyText),
}

/// Most index names a policy may ask the host to try per directory request.
pub const MAX_INDEX_NAMES: usize = 16;
/// Longest index name (a file name: `NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;
/// Most request header names a policy may declare.
pub const MAX_REQUEST_HEADERS: usize = 32;

/// Which request fields cross into the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// Every header and the query (0.1.0 policies, which declare nothing).
    All,
    /// Only these header fields, and the query if `query`.
    Declared {
        headers: Vec<HeaderName>,
        query: bool,
    },
}

impl Fields {
    /// Whether header `name` is passed to the policy.
    pub fn wants(&self, name: &HeaderName) -> bool {
        match self {
            Fields::All => true,
            Fields::Declared { headers, .. } => headers.contains(name),
        }
    }

    /// Whether the query is passed to the policy.
    pub fn query(&self) -> bool {
        match self {
            Fields::All => true,
            Fields::Declared { query, .. } => *query,
        }
    }
}

/// What the policy asked of the host, checked against the host's limits.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub index_names: Vec<String>,
    /// Codings of precompressed siblings to look for, without duplicates.
    pub siblings: Vec<Coding>,
    pub fields: Fields,
    /// Decisions are a pure function of the inputs and may be reused.
    pub reusable: bool,
    /// Most entries of a directory listing to give the policy (0: never),
    /// clamped to `MAX_LISTING`: a policy asking for more is given that
    /// many, not refused (the WIT documents the clamp).
    pub listing: u32,
    pub transport: Transport,
}

impl Capabilities {
    pub(super) fn check(configured: Configured) -> Result<Capabilities, CapabilityError> {
        let (index_names, siblings, fields, reusable, listing, transport) = match configured {
            Configured::V0_3(c) => {
                if c.request_headers.len() > MAX_REQUEST_HEADERS {
                    return Err(CapabilityError::RequestHeaderCount(c.request_headers.len()));
                }
                let headers = c
                    .request_headers
                    .into_iter()
                    .map(|n| {
                        // `HeaderName` lower-cases; a declared upper-case name
                        // would silently never match what the policy compares.
                        match HeaderName::from_bytes(n.as_bytes()) {
                            Ok(h) if h.as_str() == n => Ok(h),
                            _ => Err(CapabilityError::RequestHeader(n.into())),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let fields = Fields::Declared {
                    headers,
                    query: c.query,
                };
                let transport = Transport {
                    chunk_size: c.chunk_size,
                    zero_copy: c.zero_copy,
                };
                let listing = c.listing.min(MAX_LISTING);
                (
                    c.index_names,
                    c.siblings,
                    fields,
                    c.reusable,
                    listing,
                    transport,
                )
            }
            Configured::V0_1 {
                index_names,
                siblings,
            } => {
                // 0.1.0 carried the transport in every decision.
                let transport = Transport {
                    chunk_size: 0,
                    zero_copy: true,
                };
                (index_names, siblings, Fields::All, false, 0, transport)
            }
        };
        if index_names.len() > MAX_INDEX_NAMES {
            return Err(CapabilityError::IndexNameCount(index_names.len()));
        }
        if let Some(bad) = index_names.iter().find(|n| !plain_file_name(n)) {
            return Err(CapabilityError::IndexName(bad.as_str().into()));
        }
        let mut unique: Vec<Coding> = Vec::with_capacity(siblings.len());
        for c in siblings {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        Ok(Capabilities {
            index_names,
            siblings: unique,
            fields,
            reusable,
            listing,
            transport,
        })
    }
}

/// One file name: not empty, `.` or `..`, no `/` or NUL, at most `NAME_MAX`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}
