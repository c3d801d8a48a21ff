//! Certificates for the TLS tests, made with the openssl CLI in a directory of the test's own.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A test CA and a server certificate it signed for `127.0.0.1` and `localhost`, made with the
/// openssl CLI: (CA PEM, server certificate PEM, server key PEM).
pub fn make_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let (ca_key, ca, key, csr, cert, ext) = (
        dir.join("ca.key"),
        dir.join("ca.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.pem"),
        dir.join("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )?;
    let p = |x: &Path| x.display().to_string();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps: [Vec<String>; 3] = [
        format!(
            "req -x509 {ec} -days 2 -keyout {} -out {}",
            p(&ca_key),
            p(&ca)
        )
        .split(' ')
        .map(str::to_owned)
        .chain(["-subj".into(), "/CN=inbox test CA".into()])
        .collect(),
        format!(
            "req {ec} -subj /CN=localhost -keyout {} -out {}",
            p(&key),
            p(&csr)
        )
        .split(' ')
        .map(str::to_owned)
        .collect(),
        format!(
            "x509 -req -days 2 -CAcreateserial -in {} -CA {} -CAkey {} -extfile {} -out {}",
            p(&csr),
            p(&ca),
            p(&ca_key),
            p(&ext),
            p(&cert)
        )
        .split(' ')
        .map(str::to_owned)
        .collect(),
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .context("running openssl (Debian package openssl)")?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok((ca, cert, key))
}
