//! The rustls server configuration, read from PEM files.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor from a PEM certificate chain (server certificate first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1). It offers HTTP/2 and HTTP/1.1 by ALPN and
/// TLS 1.3 and 1.2 with the ring provider's default cipher suites.
///
/// # Errors
/// When a file cannot be read, contains no certificate or key, or the key does not match
/// the certificate.
pub fn acceptor(cert_path: &Path, key_path: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("cannot read the TLS certificate {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in the TLS certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        bail!(
            "invalid TLS certificate file {}: no PEM CERTIFICATE block found",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| match error {
        pem::Error::Io(error) => anyhow!(
            "cannot read the TLS key file {}: {error}",
            key_path.display()
        ),
        // Other PEM errors can quote lines of the file, which contains a secret.
        _ => anyhow!(
            "invalid TLS key file {}: no valid PEM private key found",
            key_path.display()
        ),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the TLS key {} does not fit the certificate {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
