//! Path patterns for plain WebSocket routes: `/ws/chat`, `/ws/game/:id`, `/files/*rest`.
//!
//! A pattern is a sequence of `/`-separated segments. A literal segment matches itself;
//! `:name` matches any one non-empty segment and captures it as parameter `name`; a
//! last segment `*name` (or `*`) captures the rest of the path, empty or not. Captured
//! values are percent-decoded (`%20` is a space; `+` stays a `+`, as in any path). One
//! trailing slash in the path is ignored: `/ws/chat/` matches `/ws/chat`.
//!
//! ```
//! use wirestate_engine::ws::route::Pattern;
//!
//! let pattern = Pattern::parse("/ws/game/:id")?;
//! let params = pattern.matches("/ws/game/a%20b").expect("matches");
//! assert_eq!(params.get("id"), Some("a b"));
//! assert!(pattern.matches("/ws/game/").is_none());
//! # Ok::<(), wirestate_engine::ws::route::PatternError>(())
//! ```

use std::fmt;

use crate::http::percent_decode_path;

/// A parsed path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    segments: Vec<Segment>,
    rest: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Why a pattern cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern does not start with `/`.
    NotAbsolute,
    /// A `:` segment has no name, or a name with characters other than ASCII letters,
    /// digits and `_`.
    BadName(String),
    /// Two parameters have the same name.
    DuplicateName(String),
    /// A `*` segment is not the last one.
    RestNotLast,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("a route pattern must start with '/'"),
            Self::BadName(n) => write!(f, "bad parameter name {n:?} in route pattern"),
            Self::DuplicateName(n) => write!(f, "parameter {n:?} appears twice in route pattern"),
            Self::RestNotLast => f.write_str("a '*' segment must be the pattern's last"),
        }
    }
}

impl std::error::Error for PatternError {}

/// The parameters a path captured, in the pattern's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Pattern {
    /// Parses `pattern`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let body = pattern.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut segments = Vec::new();
        let mut rest = None;
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let name = if let Some(name) = part.strip_prefix(':') {
                if !valid_name(name) {
                    return Err(PatternError::BadName(name.to_owned()));
                }
                segments.push(Segment::Param(name.to_owned()));
                name
            } else if let Some(name) = part.strip_prefix('*') {
                if i + 1 != parts.len() {
                    return Err(PatternError::RestNotLast);
                }
                let name = if name.is_empty() { "*" } else { name };
                if name != "*" && !valid_name(name) {
                    return Err(PatternError::BadName(name.to_owned()));
                }
                rest = Some(name.to_owned());
                name
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
                continue;
            };
            if names.contains(&name) {
                return Err(PatternError::DuplicateName(name.to_owned()));
            }
            names.push(name);
        }
        Ok(Self {
            source: pattern.to_owned(),
            segments,
            rest,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parameters `path` (a request path, without its query) captures, if it
    /// matches.
    pub fn matches(&self, path: &str) -> Option<Params> {
        let body = path.strip_prefix('/')?;
        let body = body.strip_suffix('/').unwrap_or(body);
        // What is left to match, `None` once every segment of the path is taken.
        let mut left = (!body.is_empty()).then_some(body);
        let mut params = Vec::new();
        for segment in &self.segments {
            let (part, tail) = match left?.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (left?, None),
            };
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    if part.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), percent_decode_path(part).into_owned()));
                }
            }
            left = tail;
        }
        let parts = left.unwrap_or("");
        match &self.rest {
            Some(name) => params.push((name.clone(), percent_decode_path(parts).into_owned())),
            None if left.is_some() => return None,
            None => {}
        }
        Some(Params(params))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).expect("valid pattern")
    }

    #[test]
    fn literals_match_exactly_with_one_optional_trailing_slash() {
        let chat = p("/ws/chat");
        assert_eq!(chat.matches("/ws/chat"), Some(Params::default()));
        assert_eq!(chat.matches("/ws/chat/"), Some(Params::default()));
        assert_eq!(chat.matches("/ws/chat//"), None);
        assert_eq!(chat.matches("/ws/chatter"), None);
        assert_eq!(chat.matches("/ws"), None);
        assert_eq!(chat.matches("/ws/chat/x"), None);
        assert_eq!(chat.matches("ws/chat"), None);
        let root = p("/");
        assert!(root.matches("/").is_some());
        assert!(root.matches("/x").is_none());
    }

    #[test]
    fn params_capture_one_decoded_segment() {
        let game = p("/ws/game/:id/:side");
        let params = game.matches("/ws/game/a%2Fb+c/left").expect("match");
        assert_eq!(params.get("id"), Some("a/b+c"));
        assert_eq!(params.get("side"), Some("left"));
        assert_eq!(params.get("other"), None);
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("id", "a/b+c"), ("side", "left")]
        );
        assert!(game.matches("/ws/game//left").is_none());
        assert!(game.matches("/ws/game/1").is_none());
        // Invalid escapes and UTF-8 are kept or replaced, never an error.
        let odd = game.matches("/ws/game/%zz/%ff").expect("match");
        assert_eq!(odd.get("id"), Some("%zz"));
        assert_eq!(odd.get("side"), Some("\u{fffd}"));
    }

    #[test]
    fn rest_captures_the_remainder() {
        let files = p("/files/*path");
        assert_eq!(
            files.matches("/files/a/b%20c").expect("m").get("path"),
            Some("a/b c")
        );
        assert_eq!(files.matches("/files").expect("m").get("path"), Some(""));
        assert!(files.matches("/other/a").is_none());
        assert_eq!(p("/*").matches("/x/y").expect("m").get("*"), Some("x/y"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Pattern::parse("ws"), Err(PatternError::NotAbsolute));
        assert_eq!(
            Pattern::parse("/a/:"),
            Err(PatternError::BadName(String::new()))
        );
        assert_eq!(
            Pattern::parse("/a/:b-c"),
            Err(PatternError::BadName("b-c".into()))
        );
        assert_eq!(
            Pattern::parse("/:a/:a"),
            Err(PatternError::DuplicateName("a".into()))
        );
        assert_eq!(Pattern::parse("/*a/b"), Err(PatternError::RestNotLast));
        assert_eq!(p("/ws/game/:id").to_string(), "/ws/game/:id");
    }
}
