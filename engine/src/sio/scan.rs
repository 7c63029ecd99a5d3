//! One pass over a JSON array: its top-level elements found and the whole checked, as
//! serde_json would check it, without building anything.
//!
//! The server keeps an event's arguments as JSON text. To do so it must know where the
//! event's name ends and the arguments begin, how many arguments there are, and that
//! the text is JSON that the full decoding would accept. Doing that with serde_json
//! (a `RawValue` per element, then a second pass for what a `Value` refuses) cost more
//! than ten times what this single pass does on a short event.

/// The deepest nesting serde_json parses into a `Value` (its recursion limit, 128,
/// counts down to zero on the 128th level).
const MAX_VALUE_DEPTH: usize = 127;

/// Runs of digits longer than this may not fit an `f64` (serde_json refuses a number
/// out of its range when it builds a `Value`).
const MAX_PLAIN_DIGITS: usize = 300;

/// What is wrong with a text that is not a JSON array, or not one the full decoding
/// accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ScanError {
    /// Not an array, or not well-formed JSON inside it.
    NotArray,
    /// Something other than whitespace after the array.
    Trailing,
    /// Well-formed, but no `Value` holds it (nested too deep, a number out of range,
    /// half a surrogate pair).
    NoValue,
}

/// A JSON array's top-level elements, as slices of its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Array<'a> {
    /// Where the array lies in the text scanned, from its `[` to its `]` (the
    /// whitespace around it left out).
    pub(super) span: std::ops::Range<usize>,
    /// How many elements it has.
    pub(super) len: usize,
    /// The first element's text.
    pub(super) first: Option<&'a str>,
    /// The text from the second element's start to the last one's end.
    pub(super) rest: Option<&'a str>,
}

/// Scans `json` (whitespace, one array, whitespace): what [`ScanError`] says if the
/// full decoding (serde_json into `Value`s) would refuse it.
pub(super) fn array(json: &str) -> Result<Array<'_>, ScanError> {
    let mut s = Scanner {
        b: json.as_bytes(),
        i: 0,
        depth: 0,
        careful: false,
    };
    s.ws();
    if s.peek() != Some(b'[') {
        return Err(ScanError::NotArray);
    }
    let start = s.i;
    s.i += 1;
    s.enter()?;
    let mut len = 0;
    let (mut first, mut rest_start, mut rest_end) = (None, 0, 0);
    s.ws();
    if s.peek() == Some(b']') {
        s.i += 1;
    } else {
        loop {
            let start = s.i;
            s.value()?;
            match len {
                0 => first = Some((start, s.i)),
                1 => (rest_start, rest_end) = (start, s.i),
                _ => rest_end = s.i,
            }
            len += 1;
            s.ws();
            match s.next() {
                Some(b',') => s.ws(),
                Some(b']') => break,
                _ => return Err(ScanError::NotArray),
            }
        }
    }
    let end = s.i;
    s.ws();
    if s.i != s.b.len() {
        return Err(ScanError::Trailing);
    }
    if s.careful && serde_json::from_str::<serde_json::Value>(json).is_err() {
        return Err(ScanError::NoValue);
    }
    Ok(Array {
        span: start..end,
        len,
        first: first.map(|(a, b)| &json[a..b]),
        rest: (len > 1).then(|| &json[rest_start..rest_end]),
    })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    /// Something was seen that only a full parse can judge (a `\u` escape, an
    /// exponent, a very long number): the text is parsed into a `Value` at the end.
    careful: bool,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// One level deeper (an array or object was opened).
    fn enter(&mut self) -> Result<(), ScanError> {
        self.depth += 1;
        if self.depth > MAX_VALUE_DEPTH {
            return Err(ScanError::NoValue);
        }
        Ok(())
    }

    fn value(&mut self) -> Result<(), ScanError> {
        match self.next().ok_or(ScanError::NotArray)? {
            b'"' => self.string(),
            b'[' => self.container(b']', Self::value),
            b'{' => self.container(b'}', Self::member),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            c @ (b'-' | b'0'..=b'9') => self.number(c),
            _ => Err(ScanError::NotArray),
        }
    }

    /// The rest of an array or object (its opening bracket read): `item`s separated
    /// by commas up to `close`.
    fn container(
        &mut self,
        close: u8,
        item: fn(&mut Self) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        self.enter()?;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
        } else {
            loop {
                item(self)?;
                self.ws();
                match self.next() {
                    Some(b',') => self.ws(),
                    Some(c) if c == close => break,
                    _ => return Err(ScanError::NotArray),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// An object's `"key": value`.
    fn member(&mut self) -> Result<(), ScanError> {
        if self.next() != Some(b'"') {
            return Err(ScanError::NotArray);
        }
        self.string()?;
        self.ws();
        if self.next() != Some(b':') {
            return Err(ScanError::NotArray);
        }
        self.ws();
        self.value()
    }

    fn literal(&mut self, rest: &[u8]) -> Result<(), ScanError> {
        if !self.b[self.i..].starts_with(rest) {
            return Err(ScanError::NotArray);
        }
        self.i += rest.len();
        Ok(())
    }

    /// The rest of a string (its opening quote read).
    fn string(&mut self) -> Result<(), ScanError> {
        loop {
            let plain = self.b[self.i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .ok_or(ScanError::NotArray)?;
            self.i += plain;
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        let hex = self.b.get(self.i..self.i + 4).ok_or(ScanError::NotArray)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(ScanError::NotArray);
                        }
                        self.i += 4;
                        // Half a surrogate pair is refused by a full parse only.
                        self.careful = true;
                    }
                    _ => return Err(ScanError::NotArray),
                },
                // A control character.
                _ => return Err(ScanError::NotArray),
            }
        }
    }

    /// The rest of a number (its first character, `first`, read).
    fn number(&mut self, first: u8) -> Result<(), ScanError> {
        let lead = if first == b'-' {
            self.next().ok_or(ScanError::NotArray)?
        } else {
            first
        };
        match lead {
            // A zero alone (a digit after it ends the number, and is then refused
            // where it stands).
            b'0' => {}
            b'1'..=b'9' => {
                let run = 1 + self.digits();
                self.careful |= run > MAX_PLAIN_DIGITS;
            }
            _ => return Err(ScanError::NotArray),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let run = self.digits();
            if run == 0 {
                return Err(ScanError::NotArray);
            }
            self.careful |= run > MAX_PLAIN_DIGITS;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(ScanError::NotArray);
            }
            // The exponent may take it out of an `f64`'s range.
            self.careful = true;
        }
        Ok(())
    }

    /// Skips a run of digits: how long it was.
    fn digits(&mut self) -> usize {
        let run = self.b[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        self.i += run;
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json says of `json`: its elements' texts if it is an array that
    /// parses into `Value`s.
    fn by_serde(json: &str) -> Option<Vec<String>> {
        let v: Vec<&serde_json::value::RawValue> = serde_json::from_str(json).ok()?;
        serde_json::from_str::<serde_json::Value>(json).ok()?;
        Some(v.iter().map(|r| r.get().to_owned()).collect())
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let deep_bad = format!("{}{}", "[".repeat(128), "]".repeat(128));
        let long = format!("[{}]", "9".repeat(400));
        let cases = [
            r#"["echo","aaaaaaaaaaaaaa"]"#,
            r#" [ "a" , 1 , -2.5e3 , true , false , null , {"k" : [1, {}]} , [] ] "#,
            "[]",
            "[ ]",
            "\u{b}[1]",
            "[1]\u{b}",
            r#"["\"\\\/\b\f\n\r\t\u00e9"]"#,
            r#"["\ud800"]"#,
            r#"["\ud83d\ude00"]"#,
            r#"["\u00g0"]"#,
            r#"["\x"]"#,
            "[\"a\u{1}\"]",
            "[\"é€😀\"]",
            "[1e400]",
            "[1e10]",
            "[-0]",
            "[01]",
            "[-]",
            "[1.]",
            "[.5]",
            "[1e]",
            "[1e+]",
            "[+1]",
            "[0.5E-2]",
            &long,
            "[1,]",
            "[,1]",
            "[1 2]",
            r#"[{"a"}]"#,
            r#"[{"a":1,}]"#,
            r#"[{1:1}]"#,
            "[tru]",
            "[nul]",
            "[true false]",
            "[1] x",
            "[1]]",
            "{}",
            "\"a\"",
            "",
            "[",
            "[\"abc",
            &deep_ok,
            &deep_bad,
        ];
        for json in cases {
            if let Err(e) = same_as_serde(json) {
                panic!("{e}");
            }
        }
    }

    /// Pieces of JSON, right and wrong, that [`token_soup_is_judged_as_serde_json_judges_it`]
    /// strings together.
    const TOKENS: [&str; 40] = [
        "[",
        "]",
        "{",
        "}",
        ",",
        ",",
        ",",
        ":",
        " ",
        "\t",
        "\"a\"",
        "\"echo\"",
        "\"\"",
        "\"\\ud800\"",
        "\"\\ud83d\\ude00\"",
        "\"\\u00e9\"",
        "\"\\x\"",
        "\"\u{1}\"",
        "\"",
        "\\",
        "0",
        "01",
        "-0",
        "-",
        "1.5",
        "1.",
        ".5",
        "1e5",
        "1E+2",
        "1e-999",
        "1e999",
        "1e",
        "true",
        "false",
        "null",
        "fals",
        "nul",
        "é",
        "9",
        "\"k\":",
    ];

    /// Checks `json` against serde_json: the same verdict, and the same elements.
    fn same_as_serde(json: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let ours = array(json);
        let theirs = by_serde(json);
        proptest::prop_assert_eq!(ours.is_ok(), theirs.is_some(), "{:?}: {:?}", json, ours);
        if let (Ok(a), Some(elements)) = (ours, theirs) {
            proptest::prop_assert_eq!(a.len, elements.len());
            // From bracket to bracket: JSON's whitespace around it (only) left out.
            proptest::prop_assert_eq!(
                &json[a.span.clone()],
                json.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            );
            proptest::prop_assert_eq!(a.first, elements.first().map(String::as_str));
            match a.rest {
                Some(rest) => proptest::prop_assert!(
                    elements.len() > 1
                        && rest.starts_with(elements[1].as_str())
                        && rest.ends_with(elements[elements.len() - 1].as_str())
                ),
                None => proptest::prop_assert!(elements.len() <= 1),
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// Arrays of JSON's tokens and near-tokens, in any order: most of it
        /// malformed, some of it well-formed JSON that a `Value` cannot hold.
        #[test]
        fn token_soup_is_judged_as_serde_json_judges_it(
            tokens in proptest::collection::vec(proptest::sample::select(TOKENS.to_vec()), 0..12),
            close in proptest::arbitrary::any::<bool>(),
        ) {
            let mut json = String::from("[");
            for t in tokens {
                json.push_str(t);
            }
            if close {
                json.push(']');
            }
            same_as_serde(&json)?;
        }

        /// Well-formed arrays with one character changed, dropped or added.
        #[test]
        fn near_misses_are_judged_as_serde_json_judges_them(
            sample in 0usize..4,
            at in 0usize..64,
            edit in 0u8..3,
            with in proptest::sample::select(b"[]{}\",:0eE+-.\\ tu1".to_vec()),
        ) {
            let samples = [
                r#"["echo","aaaa",1,-2.5e3]"#,
                r#"["a",{"k":[true,false,null]},[]]"#,
                r#"[0.5,"\u00e9\n",{"":{}}]"#,
                r#"[ "x" , [ [ 1 ] ] , 10 ]"#,
            ];
            let mut bytes = samples[sample].as_bytes().to_vec();
            let at = at % (bytes.len() + 1);
            match edit {
                0 if at < bytes.len() => bytes[at] = with,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, with),
            }
            if let Ok(json) = std::str::from_utf8(&bytes) {
                same_as_serde(json)?;
            }
        }
    }

    #[test]
    fn says_why() {
        assert_eq!(array("{}"), Err(ScanError::NotArray));
        assert_eq!(array("[1] 2"), Err(ScanError::Trailing));
        assert_eq!(array("[1e999]"), Err(ScanError::NoValue));
        let rest = array(r#"["ev", 1, {"a": [2]} ,"x"]"#).expect("array");
        assert_eq!(rest.first, Some(r#""ev""#));
        assert_eq!(rest.rest, Some(r#"1, {"a": [2]} ,"x""#));
        assert_eq!(rest.len, 4);
    }
}
