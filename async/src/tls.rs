//! TLS configuration shared by the adapters' TLS support (rustls, with the `ring`
//! provider): a server configuration from PEM files. Each adapter's `tls` module
//! wraps it for its runtime's streams (`wirestate_tokio::tls::TlsAcceptor`).

use std::io;
use std::path::Path;
use std::sync::Arc;

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration for `https://` and `wss://` from a PEM certificate chain
/// (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1), announcing
/// HTTP/1.1 by ALPN. Errors name the file and what is wrong with it.
pub fn server_config(cert_chain: &[u8], key: &[u8]) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("certificate chain: no certificate in it".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(format!("private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid(format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] from the files at `cert_chain` and `key`.
pub fn server_config_from_files(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    server_config(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
