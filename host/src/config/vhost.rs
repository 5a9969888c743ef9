//! `[[vhost]]`: one virtual host's keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ByteSize;

/// One virtual host: its own root, policy component, settings and limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VhostConfig {
    /// Host name (the `Host` header without port), case-insensitive.
    pub host: String,
    pub root: PathBuf,
    /// Policy component; the built-in default policy when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<PathBuf>,
    /// The `[sandbox]` keys of the same names, for this host's policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// This host's own PEM certificate chain, served on the TLS listener to
    /// clients whose SNI names it (the top-level one is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching this host's `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub policy: BTreeMap<String, toml::Value>,
}
