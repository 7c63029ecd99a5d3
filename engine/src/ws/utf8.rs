//! Streaming UTF-8 validation that fails as soon as an invalid sequence is seen.
//!
//! A text message may arrive in many frames, and a frame in many reads. The validator
//! takes the pieces as they come and reports an error at the first byte that cannot be
//! part of valid UTF-8 — not at the end of the message (Autobahn 6.4.x checks this).
//! The only state kept between pieces is an incomplete code point of at most 3 bytes.

/// The input is not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

/// An incremental UTF-8 validator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            len: 0,
        }
    }

    /// Validates the next piece of the text.
    ///
    /// Returns an error as soon as the bytes seen so far cannot begin any valid UTF-8
    /// text; an incomplete code point at the end of `data` is kept for the next call.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            let need = width(self.partial[0]);
            while usize::from(self.len) < need && !data.is_empty() {
                self.partial[usize::from(self.len)] = data[0];
                self.len += 1;
                data = &data[1..];
            }
            match std::str::from_utf8(&self.partial[..usize::from(self.len)]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                // Still incomplete, and `data` is exhausted.
                Err(_) => return Ok(()),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the text: an incomplete code point at the end is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let incomplete = self.len > 0;
        self.len = 0;
        if incomplete {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// The length of the sequence that `lead` starts (1 for bytes that cannot lead: the
/// check that follows rejects them).
fn width(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 1,
    }
}

/// Validates a complete text in one call.
pub fn validate(data: &[u8]) -> Result<(), InvalidUtf8> {
    validate_str(data).map(|_| ())
}

/// [`validate`], giving the text.
pub fn validate_str(data: &[u8]) -> Result<&str, InvalidUtf8> {
    simdutf8::basic::from_utf8(data).map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(data: &[u8], size: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for c in data.chunks(size.max(1)) {
            v.feed(c)?;
        }
        v.finish()
    }

    #[test]
    fn agrees_with_std_in_every_chunking() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98\x80 ok",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\x9f\xbf\xee\x80\x80",
            b"abc\xe2\x82",
            b"\xff",
            b"",
        ];
        for s in samples {
            let expected = std::str::from_utf8(s).is_ok();
            for size in 1..=s.len().max(1) {
                assert_eq!(
                    chunked(s, size).is_ok(),
                    expected,
                    "{s:?} in chunks of {size}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_before_the_text_ends() {
        // A surrogate (invalid) followed by more data that never arrives.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xce\xba\xe1\xbd\xb9").is_ok());
        assert_eq!(v.feed(b"\xed\xa0"), Err(InvalidUtf8));
        // A truncated but so far valid prefix is not an error until the end.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf0\x9f").is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
