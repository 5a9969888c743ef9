//! Where the access log goes (`access-log`) and how its lines are written
//! (`access-log-format`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the access log is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLogTarget {
    #[default]
    Off,
    Stderr,
    Stdout,
    /// A file, created if absent and appended to.
    File(PathBuf),
}

impl Serialize for AccessLogTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AccessLogTarget::Off => s.serialize_str("off"),
            AccessLogTarget::Stderr => s.serialize_str("stderr"),
            AccessLogTarget::Stdout => s.serialize_str("stdout"),
            AccessLogTarget::File(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AccessLogTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "off" => AccessLogTarget::Off,
            "stderr" => AccessLogTarget::Stderr,
            "stdout" => AccessLogTarget::Stdout,
            "" => {
                return Err(serde::de::Error::custom(
                    "expected \"off\", \"stderr\", \"stdout\" or a file path",
                ))
            }
            _ => AccessLogTarget::File(PathBuf::from(text)),
        })
    }
}

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLogFormat {
    /// nginx's `combined`, with `vhost`, `transfer` and `policy_us` appended.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}
