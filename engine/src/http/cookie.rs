//! The cookies a client keeps for its one server: what `Set-Cookie` sets, sent back
//! as `Cookie` on every later request (sticky load balancers route by them).

/// Cookies set by one server, in the order first set. Attributes other than
/// `Max-Age` are not applied: the client talks to one origin and one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: Vec<(String, String)>,
}

/// How many cookies a jar keeps; past it, new names are dropped.
const MAX_COOKIES: usize = 50;
/// The longest `name=value` kept.
const MAX_COOKIE_SIZE: usize = 4096;

impl CookieJar {
    /// Takes one `Set-Cookie` header value: sets the cookie, or removes it when its
    /// `Max-Age` is zero or less. Malformed values are ignored.
    pub fn set(&mut self, header: &[u8]) {
        let Ok(header) = std::str::from_utf8(header) else {
            return;
        };
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || name.len() + value.len() > MAX_COOKIE_SIZE
            || !name.bytes().all(super::is_tchar)
            || !value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            return;
        }
        let expired = parts.any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age")
                    && v.trim().parse::<i64>().is_ok_and(|s| s <= 0)
            })
        });
        let existing = self.cookies.iter().position(|(n, _)| n == name);
        match (existing, expired) {
            (Some(i), true) => {
                self.cookies.remove(i);
            }
            (Some(i), false) => self.cookies[i].1 = value.to_owned(),
            (None, false) if self.cookies.len() < MAX_COOKIES => {
                self.cookies.push((name.to_owned(), value.to_owned()))
            }
            (None, _) => {}
        }
    }

    /// The `Cookie` header value for the next request, if any cookie is set.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        Some(pairs.join("; "))
    }

    /// Whether no cookie is set.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replace_and_expire() {
        let mut jar = CookieJar::default();
        assert_eq!(jar.header(), None);
        jar.set(b"AWSALB=abc123; Expires=Tue, 01 Jan 2030 00:00:00 GMT; Path=/");
        jar.set(b"io=xyz; Path=/; HttpOnly; SameSite=Lax");
        assert_eq!(jar.header().as_deref(), Some("AWSALB=abc123; io=xyz"));
        jar.set(b"AWSALB=def456");
        assert_eq!(jar.header().as_deref(), Some("AWSALB=def456; io=xyz"));
        jar.set(b"io=; Max-Age=0");
        assert_eq!(jar.header().as_deref(), Some("AWSALB=def456"));
    }

    #[test]
    fn malformed_and_oversized_values_are_ignored() {
        let mut jar = CookieJar::default();
        for bad in [
            &b"novalue"[..],
            b"=x",
            b"a b=c",
            b"n=v\r\nX: y",
            b"\xff=1",
            b"n=a;b",
        ] {
            jar.set(bad);
        }
        let big = format!("big={}", "x".repeat(5000));
        jar.set(big.as_bytes());
        assert_eq!(
            jar.header().as_deref(),
            Some("n=a"),
            "only `n=a;b`'s `n=a` is well formed"
        );
        for i in 0..100 {
            jar.set(format!("c{i}=1").as_bytes());
        }
        assert_eq!(
            jar.header().map(|h| h.matches("; ").count() + 1),
            Some(MAX_COOKIES)
        );
    }
}
