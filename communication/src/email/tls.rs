//! TLS for the mail servers (rustls with ring, the TLS stack the workspace already builds):
//! `none` (loopback peers, a local relay), `starttls` (upgrade after the greeting: SMTP
//! submission on 587) or `implicit` (TLS from the first byte: IMAPS 993, SMTPS 465). Server
//! certificates are checked against the system's roots plus, optionally, a PEM file of extra CA
//! certificates (a private CA, or the test harness's own).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    None,
    /// Plain greeting, then `STARTTLS` and the handshake before anything else (no fallback).
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "starttls" => Some(Self::Starttls),
            "implicit" => Some(Self::Implicit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starttls => "starttls",
            Self::Implicit => "implicit",
        }
    }
}

/// How one mail server connection is secured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// Extra trusted CA certificates (PEM), on top of the system's.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no trusted CA certificates (none in the system store and no CA file)")]
    NoRoots,
}

/// The CA certificates of a PEM file (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A rustls client configuration trusting the system's roots and `ca_file`'s certificates.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    // A missing or unreadable system store is not fatal when a CA file names what to trust.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The host part of `host:port` (IPv6 in brackets allowed) as a TLS server name.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host_of(addr);
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// The host part of `host:port`, without IPv6 brackets.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_and_hosts_parse() {
        assert_eq!(TlsMode::parse("STARTTLS"), Some(TlsMode::Starttls));
        assert_eq!(TlsMode::parse("implicit"), Some(TlsMode::Implicit));
        assert_eq!(TlsMode::parse("ssl"), None);
        assert_eq!(host_of("imap.gmail.com:993"), "imap.gmail.com");
        assert_eq!(host_of("[::1]:993"), "::1");
        assert!(server_name("127.0.0.1:993").is_ok());
        assert!(server_name("imap.example.com:993").is_ok());
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error_naming_it() {
        let path = std::env::temp_dir().join(format!("no-ca-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, "not a certificate").expect("temp file");
        let err = client_config(Some(&path)).expect_err("no certificate");
        let _ = std::fs::remove_file(&path);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
