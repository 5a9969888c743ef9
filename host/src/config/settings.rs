//! Policy settings as the operator wrote them (`[policy]`, `[vhost.policy]`),
//! and settings read from files: `name = { file = "PATH" }`.
//!
//! A file setting (a site's `_redirects`, say) is kept as its path and read
//! each time the policy is loaded, at start-up and at every reload, so an
//! edited file takes effect on the next reload like an edited component.
//! A relative path is taken from the configuration file's directory (the
//! working directory for a configuration given on the command line only).
//! The file must be UTF-8 and at most [`MAX_SETTING_FILE`] bytes (1 MiB):
//! it is copied into every instance of the policy, so the bound is a bound
//! on what one setting can make every instance hold. A file that breaks a
//! rule refuses the policy with a message naming the setting, the file and
//! the rule; on a reload the previous policy keeps serving. Its contents
//! are passed to the policy as `text`, and are part of the settings, so of
//! what makes two loaded policies the same (`policy::shared`'s key).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::contract::wit;

/// Largest file a setting may be read from.
pub const MAX_SETTING_FILE: u64 = 1 << 20;

/// Where a setting's value comes from.
#[derive(Debug, Clone)]
pub enum SettingSource {
    /// Written in the configuration.
    Value(wit::SettingValue),
    /// `{ file = "PATH" }`: read at every load (absolute once resolved).
    File(PathBuf),
}

/// One policy setting as configured.
#[derive(Debug, Clone)]
pub struct PolicySetting {
    pub name: String,
    pub source: SettingSource,
}

/// Why a setting's file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingFileError {
    #[error("policy setting `{setting}`: cannot read {}: {source}", path.display())]
    Read {
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "policy setting `{setting}`: {} is larger than {} bytes (1 MiB), the limit of a setting \
         read from a file",
        path.display(),
        MAX_SETTING_FILE
    )]
    TooLarge { setting: String, path: PathBuf },
    #[error("policy setting `{setting}`: {} is not UTF-8 text", path.display())]
    NotUtf8 { setting: String, path: PathBuf },
}

/// Whether `value` is a file setting, `{ file = "PATH" }`, and its path.
pub fn file_setting(value: &toml::Value) -> Option<&str> {
    match value {
        toml::Value::Table(t) if t.len() == 1 => t.get("file")?.as_str(),
        _ => None,
    }
}

/// The settings of one `[policy]` table; relative file paths are taken
/// from `dir` (the configuration file's directory).
pub fn policy_settings(
    table: &BTreeMap<String, toml::Value>,
    dir: Option<&Path>,
) -> Vec<PolicySetting> {
    let text = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    table
        .iter()
        .map(|(k, v)| PolicySetting {
            name: k.clone(),
            source: match (file_setting(v), v) {
                (Some(path), _) => SettingSource::File(match dir {
                    Some(dir) => dir.join(path),
                    None => PathBuf::from(path),
                }),
                (None, toml::Value::String(s)) => {
                    SettingSource::Value(wit::SettingValue::Text(s.clone()))
                }
                (None, toml::Value::Integer(n)) => {
                    SettingSource::Value(wit::SettingValue::Integer(*n))
                }
                (None, toml::Value::Boolean(b)) => {
                    SettingSource::Value(wit::SettingValue::Boolean(*b))
                }
                (None, toml::Value::Array(items)) => {
                    SettingSource::Value(wit::SettingValue::Items(items.iter().map(text).collect()))
                }
                (None, other) => SettingSource::Value(wit::SettingValue::Text(text(other))),
            },
        })
        .collect()
}

/// The settings as the WIT passes them, every file read now.
pub fn read_settings(settings: &[PolicySetting]) -> Result<Vec<wit::Setting>, SettingFileError> {
    settings
        .iter()
        .map(|s| {
            let value = match &s.source {
                SettingSource::Value(v) => v.clone(),
                SettingSource::File(path) => wit::SettingValue::Text(read(&s.name, path)?),
            };
            Ok(wit::Setting {
                name: s.name.clone(),
                value,
            })
        })
        .collect()
}

/// Reads at most `MAX_SETTING_FILE` + 1 bytes of `path` (whatever its
/// reported size: a FIFO or a file growing meanwhile is bounded too).
fn read(setting: &str, path: &Path) -> Result<String, SettingFileError> {
    let read_err = |source| SettingFileError::Read {
        setting: setting.to_owned(),
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SETTING_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SETTING_FILE {
        return Err(SettingFileError::TooLarge {
            setting: setting.to_owned(),
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|_| SettingFileError::NotUtf8 {
        setting: setting.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_bounded_and_relative_to_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("_redirects"), "/a /b 301\n").unwrap();
        std::fs::write(
            dir.path().join("exact"),
            "x".repeat(MAX_SETTING_FILE as usize),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("big"),
            "x".repeat(MAX_SETTING_FILE as usize + 1),
        )
        .unwrap();
        std::fs::write(dir.path().join("binary"), b"\xff\xfe").unwrap();
        let table: BTreeMap<String, toml::Value> = toml::from_str(
            r#"
            redirects = { file = "_redirects" }
            n = 3
            "#,
        )
        .unwrap();
        let settings = policy_settings(&table, Some(dir.path()));
        assert!(matches!(
            &settings[1].source,
            SettingSource::File(p) if *p == dir.path().join("_redirects")
        ));
        let read = read_settings(&settings).unwrap();
        assert!(matches!(&read[1].value, wit::SettingValue::Text(t) if t == "/a /b 301\n"));
        assert!(matches!(read[0].value, wit::SettingValue::Integer(3)));

        let one = |file: &str| {
            read_settings(&[PolicySetting {
                name: "redirects".into(),
                source: SettingSource::File(dir.path().join(file)),
            }])
        };
        assert!(one("exact").is_ok());
        let e = one("big").unwrap_err().to_string();
        assert!(
            e.contains("`redirects`") && e.contains("big") && e.contains("1048576 bytes (1 MiB)"),
            "{e}"
        );
        let e = one("binary").unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = one("missing").unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
    }
}
