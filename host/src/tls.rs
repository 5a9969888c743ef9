//! TLS: the server's certificates (PEM chain and key per listener and per
//! virtual host, checked against each other when loaded, picked by SNI and
//! replaced on reload), ALPN, and whether the kernel could take over record
//! encryption (kTLS).
//!
//! TLS connections always take the copying path (see [`crate::transfer`]):
//! every byte is read into user space and encrypted there. Unlike plain TCP,
//! the chunk size barely matters then: per-byte work (AES-GCM, the page-cache
//! copy, the socket copy) dominates, and rustls writes about 64 KiB of records
//! at a time whatever the chunk (measured in BENCHMARKS.md, "TLS and HTTP/2").
//! The ring provider is used, not aws-lc-rs: the latter needs cmake to build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, InconsistentKeys};

use crate::config::CertFiles;
use crate::stats;

/// Why a certificate or key cannot be served.
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
    /// One of the above, for a virtual host's own certificate.
    #[error("vhost {host}: {source}")]
    Vhost { host: String, source: Box<TlsError> },
}

/// ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Reads and checks a certificate and its key: a key that does not belong
/// to the certificate is refused here (rustls would otherwise only fail
/// handshakes, one client at a time).
fn load(files: &CertFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    certified_key(&files.cert, &files.key, provider).map(Arc::new)
}

/// One certificate being served, replaceable while handshakes read it.
#[derive(Debug)]
struct Slot {
    files: CertFiles,
    current: ArcSwap<CertifiedKey>,
}

/// The TLS listener's certificates: its default one and each virtual host's
/// own, picked by the client's SNI (case-insensitive, as virtual hosts are
/// matched for `Host`); a name no virtual host certificate matches, or no
/// SNI at all, gets the default (nginx's `default_server`).
///
/// A handshake reads a certificate through [`ArcSwap`]: it never waits for a
/// reload, and a reload never waits for handshakes.
#[derive(Debug)]
pub struct Certificates {
    provider: Arc<CryptoProvider>,
    default: Slot,
    /// By lower-case host name.
    vhosts: HashMap<String, Slot>,
}

impl Certificates {
    /// Loads the default certificate and every virtual host's; the first that
    /// cannot be served is the error (naming the virtual host and the file).
    pub fn load(
        default: CertFiles,
        vhosts: impl IntoIterator<Item = (String, CertFiles)>,
    ) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let slot = |files: CertFiles| -> Result<Slot, TlsError> {
            Ok(Slot {
                current: ArcSwap::new(load(&files, &provider)?),
                files,
            })
        };
        let default = slot(default)?;
        let vhosts = vhosts
            .into_iter()
            .map(|(host, files)| {
                let host = host.to_ascii_lowercase();
                match slot(files) {
                    Ok(s) => Ok((host, s)),
                    Err(e) => Err(TlsError::Vhost {
                        host,
                        source: Box::new(e),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Certificates {
            provider,
            default,
            vhosts,
        }))
    }

    /// Reads every certificate and key again. Each pair is replaced on its
    /// own, and only if it loads and matches: one that does not (a missing
    /// file, no PEM, a key of another certificate) is refused, logged and
    /// returned, and the one it would replace keeps serving. A renewal of one
    /// host is thus not held back by a mistake in another's files, as a
    /// site's policy is reloaded independently of the others'.
    pub fn reload(&self) -> Vec<TlsError> {
        let mut failures = Vec::new();
        let slots = std::iter::once((None, &self.default))
            .chain(self.vhosts.iter().map(|(h, s)| (Some(h), s)));
        for (host, slot) in slots {
            let name = host.map_or("(default)", String::as_str);
            match load(&slot.files, &self.provider) {
                Ok(key) => {
                    slot.current.store(key);
                    stats::add(&stats::get().certificate_reloads, 1);
                    tracing::info!(certificate = %slot.files.cert.display(), site = name, "certificate reloaded");
                }
                Err(e) => {
                    stats::add(&stats::get().certificate_reload_failures, 1);
                    tracing::error!(site = name, error = %e, "certificate reload refused; the old certificate keeps serving");
                    failures.push(match host {
                        Some(h) => TlsError::Vhost {
                            host: h.clone(),
                            source: Box::new(e),
                        },
                        None => e,
                    });
                }
            }
        }
        failures
    }

    /// The virtual host whose own certificate a name (SNI or `Host`) is
    /// served, or `None` for the default certificate.
    fn vhost_for(&self, name: Option<&str>) -> Option<&str> {
        let name = name?.trim_end_matches('.').to_ascii_lowercase();
        self.vhosts.get_key_value(&name).map(|(h, _)| h.as_str())
    }

    /// What a connection whose client sent `sni` was served; `None` when no
    /// virtual host has its own certificate (every request may then go to
    /// any site, as without SNI).
    pub fn served(self: &Arc<Self>, sni: Option<&str>) -> Option<Served> {
        if self.vhosts.is_empty() {
            return None;
        }
        Some(Served {
            vhost: self.vhost_for(sni).map(str::to_owned),
            certs: self.clone(),
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let slot = match self.vhost_for(hello.server_name()) {
            Some(host) => &self.vhosts[host],
            None => &self.default,
        };
        Some(slot.current.load_full())
    }
}

/// The certificate a TLS connection was served, to hold its requests to it.
///
/// A client may send requests for one host on a connection whose handshake
/// named another (HTTP/2 connection reuse, or a `Host` unlike the SNI).
/// nginx serves them by `Host`; sluice does too, unless the two names are
/// served different certificates: then the client never verified this
/// connection for that host, and the request gets 421 Misdirected Request
/// (RFC 9110 §15.5.20), on which browsers retry on a new connection. Names
/// that share the default certificate may share a connection.
#[derive(Debug, Clone)]
pub struct Served {
    certs: Arc<Certificates>,
    /// The virtual host whose certificate the handshake chose; `None` for
    /// the default one.
    vhost: Option<String>,
}

impl Served {
    /// Whether a request for `host` (the `Host` name without port; `None`
    /// when absent, which the default site answers) must be refused.
    pub fn misdirected(&self, host: Option<&str>) -> bool {
        self.certs.vhost_for(host) != self.vhost.as_deref()
    }
}

/// The server's TLS configuration: certificates picked by SNI, TLS 1.2 and
/// 1.3, ALPN.
pub fn server_config(certs: Arc<Certificates>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(certs.provider.clone())
        .with_safe_default_protocol_versions()
        // Only fails for a provider without cipher suites for those versions,
        // which ring's default provider is not (a unit test builds it).
        .expect("ring's provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// ALPN of HTTP/3 (RFC 9114).
pub const ALPN_H3: &[u8] = b"h3";

/// The TLS configuration of QUIC connections (HTTP/3): the same
/// certificates, SNI choice and reloads as [`server_config`] (the same
/// resolver: a reload applies to new QUIC handshakes too), TLS 1.3 only (QUIC
/// requires it), ALPN `h3`, and no 0-RTT: early data can be replayed by anyone
/// who captured it, and although a GET of a static file is idempotent, the
/// decision a replay would get (a policy keyed on time, say) need not be;
/// what it saves is one round trip on a resumed connection.
pub fn quic_server_config(certs: Arc<Certificates>) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(certs.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring's provider supports TLS 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H3.to_vec()];
    // No 0-RTT (see above); quinn also refuses to accept it at 0.
    config.max_early_data_size = 0;
    config
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

    fn files(cert: &str, key: &str) -> CertFiles {
        CertFiles {
            cert: cert.into(),
            key: key.into(),
        }
    }

    #[test]
    fn missing_files_are_named() {
        let e =
            Certificates::load(files("/nonexistent/c.pem", "/nonexistent/k.pem"), []).unwrap_err();
        assert!(matches!(e, TlsError::CertFile { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
    }

    /// A self-signed certificate for `names`, written to `dir/stem.{cert,key}.pem`.
    fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> CertFiles {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let f = CertFiles {
            cert: dir.join(format!("{stem}.cert.pem")),
            key: dir.join(format!("{stem}.key.pem")),
        };
        std::fs::write(&f.cert, ck.cert.pem()).unwrap();
        std::fs::write(&f.key, ck.signing_key.serialize_pem()).unwrap();
        f
    }

    /// The leaf certificate a name is served (what `resolve` picks).
    fn leaf(certs: &Certificates, name: Option<&str>) -> Vec<u8> {
        let slot = match certs.vhost_for(name) {
            Some(h) => &certs.vhosts[h],
            None => &certs.default,
        };
        slot.current.load().cert[0].to_vec()
    }

    #[test]
    fn names_pick_their_vhost_case_insensitively_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let default = write_cert(dir.path(), "default", &["localhost"]);
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let certs =
            Certificates::load(default.clone(), [("A.Test".to_owned(), a.clone())]).unwrap();
        let a_der = leaf(&certs, Some("a.test"));
        let default_der = leaf(&certs, None);
        assert_ne!(a_der, default_der);
        for name in ["a.test", "A.TEST", "a.test."] {
            assert_eq!(leaf(&certs, Some(name)), a_der, "{name}");
        }
        for name in [Some("b.test"), Some("localhost"), Some("test"), None] {
            assert_eq!(leaf(&certs, name), default_der, "{name:?}");
        }
        // The configuration builds with this resolver.
        let config = server_config(certs.clone());
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // QUIC's: the same resolver, ALPN h3, no 0-RTT.
        let quic = quic_server_config(certs.clone());
        assert_eq!(quic.alpn_protocols, [b"h3".to_vec()]);
        assert_eq!(quic.max_early_data_size, 0);
        // quinn accepts it (it refuses a configuration without TLS 1.3, or
        // with an early-data size other than 0 or u32::MAX).
        assert!(quinn::crypto::rustls::QuicServerConfig::try_from(quic).is_ok());

        // Requests are held to the certificate their connection was served.
        let on_a = certs.served(Some("a.test")).unwrap();
        assert!(!on_a.misdirected(Some("a.test")));
        assert!(!on_a.misdirected(Some("A.test.")));
        assert!(on_a.misdirected(Some("b.test")));
        assert!(on_a.misdirected(None));
        let on_default = certs.served(Some("c.test")).unwrap();
        assert!(!on_default.misdirected(Some("localhost")));
        assert!(!on_default.misdirected(None));
        assert!(on_default.misdirected(Some("a.test")));
        // Without virtual host certificates there is nothing to check.
        let single = Certificates::load(default, []).unwrap();
        assert!(single.served(Some("a.test")).is_none());
    }

    #[test]
    fn reload_replaces_each_pair_that_loads_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let default = write_cert(dir.path(), "default", &["localhost"]);
        let a = write_cert(dir.path(), "a", &["a.test"]);
        let certs =
            Certificates::load(default.clone(), [("a.test".to_owned(), a.clone())]).unwrap();
        let (old_default, old_a) = (leaf(&certs, None), leaf(&certs, Some("a.test")));
        // Nothing changed: the same certificates, no failures.
        assert!(certs.reload().is_empty());
        assert_eq!(leaf(&certs, Some("a.test")), old_a);

        // New files for the default; a's key replaced by another one's.
        write_cert(dir.path(), "default", &["localhost"]);
        let other = write_cert(dir.path(), "other", &["a.test"]);
        std::fs::copy(&other.key, &a.key).unwrap();
        let failures = certs.reload();
        assert_eq!(failures.len(), 1, "{failures:?}");
        let e = failures[0].to_string();
        assert!(
            e.starts_with("vhost a.test: ") && e.contains("does not match the certificate"),
            "{e}"
        );
        assert_ne!(leaf(&certs, None), old_default, "the default was renewed");
        assert_eq!(leaf(&certs, Some("a.test")), old_a, "a keeps its old pair");

        // A missing file is refused the same way.
        std::fs::remove_file(&default.cert).unwrap();
        let renewed = leaf(&certs, None);
        let failures = certs.reload();
        assert!(
            matches!(
                &failures[..],
                [TlsError::CertFile { .. }, TlsError::Vhost { .. }]
            ),
            "{failures:?}"
        );
        assert_eq!(leaf(&certs, None), renewed);
    }

    #[test]
    fn a_vhost_certificate_that_cannot_load_names_the_vhost() {
        let dir = tempfile::tempdir().unwrap();
        let default = write_cert(dir.path(), "default", &["localhost"]);
        let e = Certificates::load(
            default,
            [(
                "a.test".to_owned(),
                files("/nonexistent/a.pem", "/nonexistent/a.key"),
            )],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("vhost a.test: cannot read the TLS certificate /nonexistent/a.pem"),
            "{text}"
        );
    }
}
