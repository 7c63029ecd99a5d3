//! How clients reach a server beside its URL: TLS for `wss://` and `https://`, and
//! the headers every request carries.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use wirestate_engine::http::{Scheme, Url, UrlError};

use crate::{Runtime, Transport};

/// A client's connection: plain TCP, or TLS over it (`wss://`, `https://`).
#[derive(Debug)]
pub enum ClientStream<T> {
    /// `ws://`, `http://`.
    Plain(T),
    /// `wss://`, `https://`.
    #[cfg(feature = "rustls")]
    Tls(Box<crate::tls::TlsStream<T>>),
}

impl<T: Transport> Transport for ClientStream<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(io) => io.poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Self::Tls(io) => io.poll_read(cx, buf),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(io) => io.poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            Self::Tls(io) => io.poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(io) => io.poll_flush(cx),
            #[cfg(feature = "rustls")]
            Self::Tls(io) => io.poll_flush(cx),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(io) => io.poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Self::Tls(io) => io.poll_shutdown(cx),
        }
    }
}

/// How a client reaches its server, beside the URL: the TLS roots it trusts, and
/// headers sent with every request (each polling request and the WebSocket upgrade:
/// `Authorization`, say). The default trusts the roots of the `webpki-roots` or
/// `native-roots` feature and adds no header.
#[derive(Clone, Debug, Default)]
pub struct Connector {
    #[cfg(feature = "rustls")]
    tls: Option<crate::tls::TlsConnector>,
    headers: Vec<(String, String)>,
}

impl Connector {
    /// Trusts what `tls` trusts (a private CA, say) for `wss://` and `https://`.
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: crate::tls::TlsConnector) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Adds a header to every request. `Host`, `Content-Length`, `Connection`,
    /// `Upgrade` and the `Sec-WebSocket-*` headers are the client's own: adding one
    /// of those is an error here, so it cannot silently break requests.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, crate::Error> {
        const OWN: [&str; 5] = [
            "host",
            "content-length",
            "connection",
            "upgrade",
            "transfer-encoding",
        ];
        let valid_name = !name.is_empty() && name.bytes().all(wirestate_engine::http::is_tchar);
        let valid_value = value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
        let lower = name.to_ascii_lowercase();
        if !valid_name
            || !valid_value
            || OWN.contains(&lower.as_str())
            || lower.starts_with("sec-websocket-")
        {
            return Err(crate::Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("header `{name}` cannot be added to a client's requests"),
            )));
        }
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The TLS settings given with [`tls`](Self::tls), if any.
    #[cfg(feature = "rustls")]
    pub(crate) fn tls_config(&self) -> Option<&crate::tls::TlsConnector> {
        self.tls.as_ref()
    }

    /// The headers added to every request.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A connection to `url`'s server: TCP, then TLS for `wss://` and `https://`.
    pub(crate) async fn open<R: Runtime>(
        &self,
        rt: &R,
        url: &Url,
    ) -> io::Result<ClientStream<R::Tcp>> {
        let tcp = rt.connect(url.authority()).await?;
        if !url.scheme.is_tls() {
            return Ok(ClientStream::Plain(tcp));
        }
        #[cfg(feature = "rustls")]
        {
            let tls = match &self.tls {
                Some(tls) => tls.clone(),
                None => crate::tls::TlsConnector::platform_default()?,
            };
            Ok(ClientStream::Tls(Box::new(
                tls.connect(&url.host, tcp).await?,
            )))
        }
        #[cfg(not(feature = "rustls"))]
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "wss:// and https:// need wirestate's `tls` feature",
        ))
    }
}

/// Parses a client URL whose scheme is `plain` or its TLS counterpart (`wss://` for
/// `ws://`, `https://` for `http://`); the TLS ones need the `tls` feature.
pub(crate) fn parse_url(url: &str, plain: &[Scheme]) -> Result<Url, UrlError> {
    let parsed = Url::parse(url)?;
    let scheme = match parsed.scheme {
        Scheme::Wss => Scheme::Ws,
        Scheme::Https => Scheme::Http,
        other => other,
    };
    if !plain.contains(&scheme) {
        return Err(UrlError::Invalid);
    }
    if parsed.scheme.is_tls() && !cfg!(feature = "rustls") {
        return Err(UrlError::TlsUnsupported);
    }
    Ok(parsed)
}
