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
        openssl(&args)?;
    }
    Ok((ca, cert, key))
}

/// A client certificate for `cn` signed by the CA that [`make_certificates`] made in `dir` (mutual
/// TLS; PostgreSQL's `cert` authentication takes the CN as the user name): (certificate PEM, key
/// PEM in PKCS#8).
pub fn make_client_certificate(dir: &Path, cn: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (ca_key, ca) = (dir.join("ca.key"), dir.join("ca.pem"));
    if !ca_key.is_file() {
        bail!(
            "no test CA in {}: make it with make_certificates first",
            dir.display()
        );
    }
    let name = format!(
        "client-{}",
        cn.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let (key, csr, cert, ext) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.ext")),
    );
    std::fs::write(
        &ext,
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )?;
    let s = |x: &str| x.to_owned();
    let p = |x: &Path| x.display().to_string();
    openssl(&[
        s("req"),
        s("-newkey"),
        s("ec"),
        s("-pkeyopt"),
        s("ec_paramgen_curve:prime256v1"),
        s("-nodes"),
        s("-subj"),
        format!("/CN={cn}"),
        s("-keyout"),
        p(&key),
        s("-out"),
        p(&csr),
    ])?;
    openssl(&[
        s("x509"),
        s("-req"),
        s("-days"),
        s("2"),
        s("-CAcreateserial"),
        s("-in"),
        p(&csr),
        s("-CA"),
        p(&ca),
        s("-CAkey"),
        p(&ca_key),
        s("-extfile"),
        p(&ext),
        s("-out"),
        p(&cert),
    ])?;
    Ok((cert, key))
}

fn openssl(args: &[String]) -> anyhow::Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (Debian package openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
