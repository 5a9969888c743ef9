//! TLS: the server's rustls configuration (certificate chain and key from
//! PEM files, checked against each other at start-up), ALPN, and whether the
//! kernel could take over record encryption (kTLS).
//!
//! TLS connections always take the copying path (see [`crate::transfer`]):
//! every byte is encrypted in user space, so the chunk size decides the speed.
//! The ring provider is used, not aws-lc-rs: the latter needs cmake to build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::ServerConfig;
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys};

/// Why the certificate or key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {source}")]
    CertFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS certificate {path} holds no PEM certificate ({reason})")]
    NoCert { path: PathBuf, reason: String },
    #[error("cannot read the TLS key {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS key {path} holds no PEM private key ({reason})")]
    NoKey { path: PathBuf, reason: String },
    #[error("the TLS key {path} is not usable: {source}")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the TLS key {key} does not match the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the TLS certificate {path} is not usable: {source}")]
    BadCert {
        path: PathBuf,
        source: rustls::Error,
    },
}

/// ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Reads a PEM certificate chain and private key and builds the server's
/// configuration, refusing a key that does not belong to the certificate
/// (rustls would otherwise only fail handshakes, one client at a time).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let certified = certified_key(cert, key, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCert {
            path: cert.to_owned(),
            source,
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    // Read the files first, so a missing file is reported as such and not as
    // "no PEM section".
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::CertFile {
        path: cert.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::KeyFile {
        path: key.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCert {
            path: cert.to_owned(),
            reason: format!("{e:?}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key.to_owned(),
        reason: format!("{e:?}"),
    })?;
    let signer = provider
        .key_provider
        .load_private_key(private)
        .map_err(|source| TlsError::BadKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            })
        }
        Err(source) => Err(TlsError::BadCert {
            path: cert.to_owned(),
            source,
        }),
    }
}

/// Where the kernel lists its TCP upper-layer protocols.
pub const AVAILABLE_ULP: &str = "/proc/sys/net/ipv4/tcp_available_ulp";

/// Whether a `tcp_available_ulp` listing (names separated by whitespace)
/// includes kernel TLS.
pub fn ulp_list_has_tls(list: &str) -> bool {
    list.split_ascii_whitespace().any(|name| name == "tls")
}

/// Whether this kernel offers kTLS right now. The `tls` module may also be
/// loadable on demand (`modprobe tls`) without being listed; sluice does not
/// load modules, so an unlisted ULP counts as absent.
pub fn kernel_offers_ktls() -> bool {
    std::fs::read_to_string(AVAILABLE_ULP).is_ok_and(|list| ulp_list_has_tls(&list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_listing() {
        assert!(!ulp_list_has_tls("mptcp\n"));
        assert!(!ulp_list_has_tls(""));
        assert!(ulp_list_has_tls("mptcp tls\n"));
        assert!(ulp_list_has_tls("tls"));
        assert!(ulp_list_has_tls("espintcp\ttls mptcp"));
        // Only the whole name counts.
        assert!(!ulp_list_has_tls("ktls tls2 xtls"));
    }

    #[test]
    fn this_kernel_is_read_without_failing() {
        // Whatever the answer, reading it must not panic; on these machines
        // (`mptcp` only) it is false.
        let listed = std::fs::read_to_string(AVAILABLE_ULP).unwrap_or_default();
        assert_eq!(kernel_offers_ktls(), ulp_list_has_tls(&listed));
    }

    #[test]
    fn missing_files_are_named() {
        let e = server_config(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .unwrap_err();
        assert!(matches!(e, TlsError::CertFile { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
    }
}
