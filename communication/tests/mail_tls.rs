//! The mail channel's TLS client configuration (`email::tls`) refuses what it must: a server whose
//! certificate no trusted CA signed, or that was issued for another name, fails the handshake;
//! the same server is accepted once its CA is given as `ca_file`. (The e2e test
//! `email_delivery.rs` shows IMAP and SMTP working over TLS against Dovecot and aiosmtpd.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use communication::email::tls::{client_config, server_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A CA in `dir` named `name`, and (when `server` is set) a server certificate it signed for
/// 127.0.0.1 and localhost: returns (CA PEM, server certificate PEM, server key PEM).
fn pki(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let f = |s: &str| dir.join(format!("{name}-{s}"));
    let (ca_key, ca, key, csr, cert, ext) = (
        f("ca.key"),
        f("ca.pem"),
        f("server.key"),
        f("server.csr"),
        f("server.pem"),
        f("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
         extendedKeyUsage = serverAuth\n",
    )?;
    let s = |p: &Path| p.display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca_key_s, ca_s, key_s, csr_s, cert_s, ext_s) =
        (s(&ca_key), s(&ca), s(&key), s(&csr), s(&cert), s(&ext));
    let subject = format!("/CN={name} test CA");
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", &subject][..],
            &ec,
            &["-keyout", &ca_key_s, "-out", &ca_s],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req", "-subj", "/CN=localhost"][..],
            &ec,
            &["-keyout", &key_s, "-out", &csr_s],
        ]
        .concat(),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-CAcreateserial",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-extfile",
        &ext_s,
        "-out",
        &cert_s,
    ])?;
    Ok((ca, cert, key))
}

/// A TLS server on loopback that greets like IMAP; returns its address.
async fn tls_server(cert: &Path, key: &Path) -> anyhow::Result<String> {
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"* OK ready\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}

/// Connects to `addr` presenting `name`, trusting `ca`; returns the greeting.
async fn greet(addr: &str, name: &str, ca: Option<&Path>) -> anyhow::Result<String> {
    let config = client_config(ca)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name(name)?, tcp)
        .await?;
    let mut greeting = String::new();
    tls.read_to_string(&mut greeting).await?;
    Ok(greeting)
}

#[tokio::test]
async fn a_mail_server_is_trusted_only_through_a_known_ca_and_for_its_own_name()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("inbox-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = pki(&dir, "private")?;
    let (other_ca, _, _) = pki(&dir, "other")?;
    let addr = tls_server(&cert, &key).await?;

    let trusted = greet(&addr, &addr, Some(&ca)).await?;
    assert_eq!(trusted, "* OK ready\r\n");
    let by_name = greet(&addr, "localhost:993", Some(&ca)).await?;
    assert_eq!(by_name, "* OK ready\r\n");

    // Not signed by any CA we trust: the system's roots alone, or another private CA.
    for ca in [None, Some(other_ca.as_path())] {
        let err = format!(
            "{:#}",
            greet(&addr, &addr, ca).await.expect_err("untrusted")
        );
        // A machine without a system store has no roots at all, which is refused too.
        assert!(
            err.contains("UnknownIssuer") || (ca.is_none() && err.contains("no trusted CA")),
            "{err}"
        );
    }
    // A certificate for other names than the one asked for.
    let err = greet(&addr, "imap.example.com:993", Some(&ca))
        .await
        .expect_err("wrong name");
    assert!(format!("{err:#}").contains("not valid for name"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
