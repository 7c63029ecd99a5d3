//! The one URL parser of every client: `ws://`, `wss://`, `http://` and `https://`.

use std::fmt;

/// The scheme of a client URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `ws://`
    Ws,
    /// `wss://`
    Wss,
    /// `http://`
    Http,
    /// `https://`
    Https,
}

impl Scheme {
    /// Whether the scheme asks for TLS.
    pub const fn is_tls(self) -> bool {
        matches!(self, Self::Wss | Self::Https)
    }

    /// The port used when the URL names none.
    pub const fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A URL that a client cannot use. Every client (`ws`, Engine.IO, Socket.IO) gives
/// this same error for a bad URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not of the form `scheme://host[:port][/path][?query]` with a scheme the client
    /// takes.
    Invalid,
    /// `wss://` or `https://`: TLS is not part of this engine; wrap the stream
    /// yourself.
    TlsUnsupported,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Invalid => "invalid URL",
            Self::TlsUnsupported => {
                "wss:// and https:// need TLS, which wirestate does not provide"
            }
        })
    }
}

impl std::error::Error for UrlError {}

/// A parsed client URL: `scheme://host[:port][/path][?query][#fragment]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
    /// Path and query, starting with `/` (the fragment is dropped).
    pub target: String,
}

impl Url {
    /// Parses `url`. Schemes are matched without regard to case; user info
    /// (`user@host`) and white space in the target are refused.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::Invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(UrlError::Invalid),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') || target.contains(char::is_whitespace) {
            return Err(UrlError::Invalid);
        }
        let port = |p: &str| p.parse::<u16>().map_err(|_| UrlError::Invalid);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(UrlError::Invalid)?;
            match after.strip_prefix(':') {
                Some(p) => (host, port(p)?),
                None if after.is_empty() => (host, scheme.default_port()),
                None => return Err(UrlError::Invalid),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, port(p)?),
                None => (authority, scheme.default_port()),
            }
        };
        if host.is_empty() || host.contains(['[', ']', ':']) && !authority.starts_with('[') {
            return Err(UrlError::Invalid);
        }
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// Parses `url` for a client that speaks plain TCP: a TLS scheme is
    /// [`UrlError::TlsUnsupported`], and `schemes` lists the others it takes.
    pub fn parse_plain(url: &str, schemes: &[Scheme]) -> Result<Self, UrlError> {
        let parsed = Self::parse(url)?;
        if parsed.scheme.is_tls() {
            return Err(UrlError::TlsUnsupported);
        }
        if !schemes.contains(&parsed.scheme) {
            return Err(UrlError::Invalid);
        }
        Ok(parsed)
    }

    /// `host:port`, to connect to (IPv6 in brackets).
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The `Host` header's value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        host_header(&self.host, self.port, self.scheme.default_port())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }
}

/// `host:port`, IPv6 in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A `Host` header's value: the port only when it is not `default_port`.
pub(crate) fn host_header(host: &str, port: u16, default_port: u16) -> String {
    match (port == default_port, host.contains(':')) {
        (false, _) => authority(host, port),
        (true, true) => format!("[{host}]"),
        (true, false) => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_scheme() {
        let u = Url::parse("ws://127.0.0.1:9001/runCase?case=1&agent=a").expect("url");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.target.as_str()),
            (Scheme::Ws, "127.0.0.1", 9001, "/runCase?case=1&agent=a")
        );
        let u = Url::parse("HTTPS://example.com#frag").expect("url");
        assert_eq!(
            (u.scheme, u.port, u.target.as_str()),
            (Scheme::Https, 443, "/")
        );
        assert_eq!(u.host_header(), "example.com");
        let u = Url::parse("http://[::1]:8080?q").expect("url");
        assert_eq!(
            (u.authority().as_str(), u.target.as_str()),
            ("[::1]:8080", "/?q")
        );
        let u = Url::parse("http://[::1]/chat/").expect("url");
        assert_eq!((u.host_header().as_str(), u.path()), ("[::1]", "/chat/"));
        let u = Url::parse("wss://h:8443").expect("url");
        assert_eq!(u.host_header(), "h:8443");
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "ftp://x",
            "x",
            "ws://",
            "ws://:80/",
            "ws://x:99999/",
            "ws://u@x/",
            "ws://x/a b",
            "ws://[::1/",
            "ws://[::1]x/",
            "ws://a:b:c/",
        ] {
            assert_eq!(Url::parse(bad), Err(UrlError::Invalid), "{bad}");
        }
        assert_eq!(
            Url::parse_plain("https://x", &[Scheme::Http]),
            Err(UrlError::TlsUnsupported)
        );
        assert_eq!(
            Url::parse_plain("ws://x", &[Scheme::Http]),
            Err(UrlError::Invalid)
        );
    }
}
