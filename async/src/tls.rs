//! TLS with rustls, written once for every runtime: rustls is itself a sans-IO state
//! machine, so [`TlsStream`] drives it over any [`Transport`] — a tokio socket, a smol
//! socket, an in-memory pipe — as the rest of this layer drives the engine.
//!
//! * Servers: [`TlsAcceptor`] (from a PEM certificate chain and key) is the
//!   [`Acceptor`] that the adapters' `serve_tls` functions take.
//! * Clients: a [`TlsConnector`] (the roots to trust) reaches `wss://` and `https://`
//!   URLs; without one, clients use the built-in roots of the `webpki-roots` feature
//!   (Mozilla's, compiled in) or the `native-roots` feature (the platform's store),
//!   whichever is enabled.
//!
//! Cryptography is rustls's `ring` provider.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::{Acceptor, Transport};

/// A TLS connection over a [`Transport`]: itself a transport, of plaintext.
pub struct TlsStream<T> {
    io: T,
    tls: rustls::Connection,
    /// The transport's read side ended.
    eof: bool,
}

impl<T> std::fmt::Debug for TlsStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.tls.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> TlsStream<T> {
    /// The transport under the TLS.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The rustls connection (negotiated protocol, peer certificates, ...).
    pub fn connection(&self) -> &rustls::Connection {
        &self.tls
    }

    /// Writes what TLS has to send, as far as the transport takes it: ready once
    /// nothing waits.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut io = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and processes TLS records: ready once some were (or the transport ended).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = SyncIo {
            io: &mut self.io,
            cx,
        };
        match self.tls.read_tls(&mut io) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.tls.process_new_packets() {
            // The alert that says why goes out if it can; the error is ours either way.
            let _ = self.poll_send(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(()))
    }

    /// Runs the handshake to its end.
    async fn handshake(mut self) -> io::Result<Self> {
        poll_fn(|cx| {
            while self.tls.is_handshaking() {
                let sent = self.poll_send(cx)?;
                if self.eof {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    )));
                }
                if self.tls.wants_read() {
                    std::task::ready!(self.poll_receive(cx))?;
                } else if sent.is_pending() {
                    return Poll::Pending;
                }
            }
            // The handshake's last flight (a client's Finished) goes out now.
            self.poll_send(cx)
        })
        .await?;
        Ok(self)
    }
}

impl<T: Transport> Transport for TlsStream<T> {
    fn is_secure(&self) -> bool {
        true
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer ended the TCP stream without a close_notify: as an end here
                // (many peers do; the protocols above frame their own ends).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Key updates and alerts have to go out for reading to go on; a full
            // transport does not hold the read up.
            if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if self.eof {
                return Poll::Ready(Ok(0));
            }
            std::task::ready!(self.poll_receive(cx))?;
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let taken = self.tls.writer().write_vectored(bufs)?;
            let sent = self.poll_send(cx)?;
            if taken > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(taken));
            }
            // rustls's buffer is full: it empties as the transport takes records.
            std::task::ready!(sent);
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tls.writer().flush()?;
        std::task::ready!(self.poll_send(cx))?;
        self.io.poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tls.send_close_notify();
        std::task::ready!(self.poll_send(cx))?;
        self.io.poll_shutdown(cx)
    }
}

/// A transport as the blocking `Read` and `Write` that rustls reads and writes
/// records with: `WouldBlock` when the transport is not ready.
struct SyncIo<'a, 'b, T> {
    io: &'a mut T,
    cx: &'a mut Context<'b>,
}

impl<T: Transport> Read for SyncIo<'_, '_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<T: Transport> Write for SyncIo<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.io.poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // the transport is flushed by `poll_flush`
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn certificates(pem: &[u8], what: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{what}: no certificate in it")));
    }
    Ok(certs)
}

/// Makes accepted connections TLS server streams: the [`Acceptor`] of the adapters'
/// `serve_tls` functions, for any transport.
#[derive(Clone)]
pub struct TlsAcceptor(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

impl TlsAcceptor {
    /// An acceptor with a rustls server configuration.
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Self(config)
    }

    /// An acceptor for a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 or SEC1), announcing HTTP/1.1 by ALPN. Errors say what is wrong
    /// with which.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<Self> {
        let certs = certificates(cert_chain, "certificate chain")?;
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(format!("private key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    /// [`from_pem`](Self::from_pem), from the files at `cert_chain` and `key`.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_pem(&read_file(cert_chain.as_ref())?, &read_file(key.as_ref())?)
    }
}

impl<S: Transport + Send + 'static> Acceptor<S> for TlsAcceptor {
    type Stream = TlsStream<S>;

    fn accept(&self, stream: S) -> impl Future<Output = io::Result<TlsStream<S>>> + Send {
        let tls = rustls::ServerConnection::new(self.0.clone())
            .map(|c| TlsStream {
                io: stream,
                tls: c.into(),
                eof: false,
            })
            .map_err(io::Error::other);
        async move { tls?.handshake().await }
    }
}

/// The roots a client trusts for `wss://` and `https://`, and the rest of its TLS
/// configuration.
#[derive(Clone)]
pub struct TlsConnector(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl TlsConnector {
    /// A connector with a rustls client configuration.
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self(config)
    }

    /// A connector that trusts `roots` only.
    pub fn with_roots(roots: rustls::RootCertStore) -> io::Result<Self> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }

    /// A connector that trusts the CA certificates in `pem` only (a private CA, a
    /// self-signed test setup).
    pub fn from_ca_pem(pem: &[u8]) -> io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(pem, "CA certificates")? {
            roots
                .add(cert)
                .map_err(|e| invalid(format!("CA certificate: {e}")))?;
        }
        Self::with_roots(roots)
    }

    /// [`from_ca_pem`](Self::from_ca_pem), from the file at `path`.
    pub fn from_ca_file(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_ca_pem(&read_file(path.as_ref())?)
    }

    /// The connector clients use when given none: Mozilla's roots (feature
    /// `webpki-roots`) or the platform's (feature `native-roots`); an error naming
    /// the features when neither is enabled.
    pub fn platform_default() -> io::Result<Self> {
        static DEFAULT: std::sync::OnceLock<Result<TlsConnector, String>> =
            std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| Self::load_default().map_err(|e| e.to_string()))
            .clone()
            .map_err(invalid)
    }

    fn load_default() -> io::Result<Self> {
        #[allow(unused_mut)]
        let mut roots = rustls::RootCertStore::empty();
        #[cfg(feature = "webpki-roots")]
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        #[cfg(feature = "native-roots")]
        {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert); // the platform's unparsable ones are skipped
            }
        }
        if roots.is_empty() {
            return Err(invalid(
                "no TLS roots to trust: enable the `webpki-roots` or `native-roots` feature, \
                 or give the client a TlsConnector"
                    .into(),
            ));
        }
        Self::with_roots(roots)
    }

    /// A TLS client stream to `host` over `stream`, once the handshake is done.
    pub async fn connect<T: Transport>(&self, host: &str, stream: T) -> io::Result<TlsStream<T>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| invalid(format!("TLS server name `{host}`: {e}")))?;
        let tls = rustls::ClientConnection::new(self.0.clone(), name).map_err(io::Error::other)?;
        TlsStream {
            io: stream,
            tls: tls.into(),
            eof: false,
        }
        .handshake()
        .await
    }
}
