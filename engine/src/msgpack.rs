//! MessagePack as `notepack.io` writes and reads it: the encoding Node's
//! `@socket.io/redis-adapter`, `@socket.io/redis-emitter` and `socket.io-msgpack-parser`
//! use.
//!
//! Values are JSON values whose binary parts are Socket.IO placeholders
//! (`{"_placeholder":true,"num":N}`) referring to a list of attachments, as in
//! [`sio::Payload`](crate::sio::Payload): encoding writes each placeholder's attachment
//! as `bin`, decoding turns each `bin` (and notepack's `ArrayBuffer` extension) back into
//! a placeholder.
//!
//! Encoding follows notepack byte for byte: the smallest integer form, integral floats
//! as integers (JavaScript has one number type), other floats as float 64, the shortest
//! string, array and map headers. Decoding accepts every MessagePack type; notepack's
//! `undefined` (fixext 1, type 0) is dropped from maps and is `null` in arrays (as
//! `JSON.stringify` treats it), its `Date` (fixext 8, type 0) becomes the ISO-8601 string
//! `toJSON` would give.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::sio::packet::placeholder;

/// Deeper values are refused when decoding.
pub const MAX_DEPTH: usize = 128;

/// Input that is not MessagePack (or nests deeper than [`MAX_DEPTH`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl DecodeError {
    /// What is wrong.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid msgpack: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Appends `value` to `out`, each placeholder replaced by its attachment from `bins`.
pub fn encode(value: &Value, bins: &[Bytes], out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => encode_number(n, out),
        Value::String(s) => encode_str(s, out),
        Value::Array(a) => {
            header(out, a.len(), 0x90, 0x10, 0xdc, 0xdd);
            for v in a {
                encode(v, bins, out);
            }
        }
        Value::Object(o) => {
            if let Some(bin) = placeholder_of(o).and_then(|n| bins.get(n)) {
                encode_bin(bin, out);
                return;
            }
            header(out, o.len(), 0x80, 0x10, 0xde, 0xdf);
            for (k, v) in o {
                encode_str(k, out);
                encode(v, bins, out);
            }
        }
    }
}

/// `value` encoded into a new buffer.
pub fn to_vec(value: &Value, bins: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, bins, &mut out);
    out
}

fn placeholder_of(o: &Map<String, Value>) -> Option<usize> {
    if o.len() != 2 || o.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    usize::try_from(o.get("num")?.as_u64()?).ok()
}

fn header(out: &mut Vec<u8>, len: usize, fix: u8, fix_max: usize, b16: u8, b32: u8) {
    if len < fix_max {
        out.push(fix | len as u8);
    } else if len < 0x1_0000 {
        out.push(b16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    let len = s.len();
    if len < 0x20 {
        out.push(0xa0 | len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len < 0x1_0000 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn encode_bin(b: &[u8], out: &mut Vec<u8>) {
    let len = b.len();
    if len < 0x100 {
        out.extend_from_slice(&[0xc4, len as u8]);
    } else if len < 0x1_0000 {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn encode_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        return encode_uint(u, out);
    }
    if let Some(i) = n.as_i64() {
        return encode_int(i, out);
    }
    let f = n.as_f64().unwrap_or(0.0);
    // JavaScript has one number type: notepack writes integral values as integers.
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        if f >= 0.0 {
            return encode_uint(f as u64, out);
        }
        return encode_int(f as i64, out);
    }
    out.push(0xcb);
    out.extend_from_slice(&f.to_be_bytes());
}

fn encode_uint(u: u64, out: &mut Vec<u8>) {
    if u < 0x80 {
        out.push(u as u8);
    } else if u < 0x100 {
        out.extend_from_slice(&[0xcc, u as u8]);
    } else if u < 0x1_0000 {
        out.push(0xcd);
        out.extend_from_slice(&(u as u16).to_be_bytes());
    } else if u < 0x1_0000_0000 {
        out.push(0xce);
        out.extend_from_slice(&(u as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&u.to_be_bytes());
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        return encode_uint(i as u64, out);
    }
    if i >= -0x20 {
        out.push(i as u8);
    } else if i >= -0x80 {
        out.extend_from_slice(&[0xd0, i as u8]);
    } else if i >= -0x8000 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -0x8000_0000 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

/// Decodes one value that fills `input`: binary parts become placeholders, their bytes
/// the returned attachments.
pub fn decode(input: &[u8]) -> Result<(Value, Vec<Bytes>), DecodeError> {
    let mut r = Reader {
        input,
        pos: 0,
        bins: Vec::new(),
    };
    let mut v = r.value(0)?.unwrap_or(Value::Null);
    if r.pos != input.len() {
        return Err(DecodeError("trailing bytes"));
    }
    let bins = drop_orphans(&mut v, r.bins);
    Ok((v, bins))
}

/// The attachments `v` refers to, renumbered in order: a map key given twice keeps its
/// last value (as in JavaScript), and binary parts the earlier values held are gone.
fn drop_orphans(v: &mut Value, bins: Vec<Bytes>) -> Vec<Bytes> {
    fn walk(v: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
        match v {
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, f)),
            Value::Object(o) if placeholder_of(o).is_some() => f(o),
            Value::Object(o) => o.values_mut().for_each(|v| walk(v, f)),
            _ => {}
        }
    }
    if bins.is_empty() {
        return bins;
    }
    let mut used = vec![false; bins.len()];
    walk(v, &mut |o| {
        if let Some(u) = placeholder_of(o).and_then(|n| used.get_mut(n)) {
            *u = true;
        }
    });
    if used.iter().all(|&u| u) {
        return bins;
    }
    let mut renumbered = vec![None; bins.len()];
    let mut kept = Vec::new();
    for (i, b) in bins.into_iter().enumerate() {
        if used[i] {
            renumbered[i] = Some(kept.len());
            kept.push(b);
        }
    }
    walk(v, &mut |o| {
        if let Some(n) = placeholder_of(o).and_then(|n| renumbered.get(n).copied().flatten()) {
            o.insert("num".into(), Value::from(n));
        }
    });
    kept
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    bins: Vec<Bytes>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or(DecodeError("truncated"))?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        usize::try_from(self.be(n)?).map_err(|_| DecodeError("length"))
    }

    fn str(&mut self, len: usize) -> Result<Value, DecodeError> {
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| DecodeError("utf-8"))?;
        Ok(Value::String(s.to_owned()))
    }

    fn bin(&mut self, len: usize) -> Result<Value, DecodeError> {
        let b = Bytes::copy_from_slice(self.take(len)?);
        let v = placeholder(self.bins.len());
        self.bins.push(b);
        Ok(v)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        // Every element takes at least one byte: a length beyond the input is a lie.
        if len > self.input.len() - self.pos {
            return Err(DecodeError("truncated"));
        }
        let mut a = Vec::with_capacity(len);
        for _ in 0..len {
            a.push(self.value(depth + 1)?.unwrap_or(Value::Null));
        }
        Ok(Value::Array(a))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        if len > (self.input.len() - self.pos) / 2 {
            return Err(DecodeError("truncated"));
        }
        let mut m = Map::with_capacity(len);
        for _ in 0..len {
            let key = match self.value(depth + 1)? {
                Some(Value::String(s)) => s,
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Null) | None => "null".to_owned(),
                Some(_) => return Err(DecodeError("map key")),
            };
            if let Some(v) = self.value(depth + 1)? {
                m.insert(key, v);
            }
        }
        Ok(Value::Object(m))
    }

    fn ext(&mut self, len: usize) -> Result<Option<Value>, DecodeError> {
        let kind = self.byte()?;
        let data = self.take(len)?;
        if kind != 0 {
            // An extension notepack does not write: keep its bytes.
            return Ok(Some(self.bin_of(data)));
        }
        match len {
            1 => Ok(None),
            8 => {
                let hi = i64::from(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                let lo = i64::from(u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
                Ok(Some(Value::String(
                    crate::date::Civil::from_millis(hi * (1 << 32) + lo).iso(),
                )))
            }
            _ => Ok(Some(self.bin_of(data))),
        }
    }

    fn bin_of(&mut self, data: &[u8]) -> Value {
        let v = placeholder(self.bins.len());
        self.bins.push(Bytes::copy_from_slice(data));
        v
    }

    /// One value; `None` for notepack's `undefined`.
    fn value(&mut self, depth: usize) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("too deep"));
        }
        let b = self.byte()?;
        let v = match b {
            0x00..=0x7f => Value::from(b),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(b & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(b & 0x1f))?,
            0xc0 => Value::Null,
            0xc1 => return Err(DecodeError("reserved byte")),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.len(1)?;
                self.bin(n)?
            }
            0xc5 => {
                let n = self.len(2)?;
                self.bin(n)?
            }
            0xc6 => {
                let n = self.len(4)?;
                self.bin(n)?
            }
            0xc7 => {
                let n = self.len(1)?;
                return self.ext(n);
            }
            0xc8 => {
                let n = self.len(2)?;
                return self.ext(n);
            }
            0xc9 => {
                let n = self.len(4)?;
                return self.ext(n);
            }
            0xca => float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => float(f64::from_bits(self.be(8)?)),
            0xcc => Value::from(self.be(1)?),
            0xcd => Value::from(self.be(2)?),
            0xce => Value::from(self.be(4)?),
            0xcf => Value::from(self.be(8)?),
            0xd0 => Value::from(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Value::from(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::from(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::from(self.be(8)? as i64),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = self.len(1)?;
                self.str(n)?
            }
            0xda => {
                let n = self.len(2)?;
                self.str(n)?
            }
            0xdb => {
                let n = self.len(4)?;
                self.str(n)?
            }
            0xdc => {
                let n = self.len(2)?;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.len(4)?;
                self.array(n, depth)?
            }
            0xde => {
                let n = self.len(2)?;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.len(4)?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::from(i64::from(b as i8)),
        };
        Ok(Some(v))
    }
}

/// A float as JavaScript (one number type) would pass it on in JSON: integral values
/// as integers, `NaN` and infinities as `null`, as `JSON.stringify` writes them.
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        return if f >= 0.0 {
            Value::from(f as u64)
        } else {
            Value::from(f as i64)
        };
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn encodes_as_notepack_does() {
        // Expected bytes written by notepack.io 3.0.1 for the same values.
        let cases: &[(Value, &str)] = &[
            (json!(0), "00"),
            (json!(127), "7f"),
            (json!(128), "cc80"),
            (json!(65535), "cdffff"),
            (json!(65536), "ce00010000"),
            (json!(4294967296u64), "cf0000000100000000"),
            (json!(-1), "ff"),
            (json!(-32), "e0"),
            (json!(-33), "d0df"),
            (json!(-129), "d1ff7f"),
            (json!(-32769), "d2ffff7fff"),
            (json!(1.5), "cb3ff8000000000000"),
            (json!(2.0), "02"),
            (json!(null), "c0"),
            (json!(true), "c3"),
            (json!("a"), "a161"),
            (json!([1, "b"]), "9201a162"),
            (json!({"k": false}), "81a16bc2"),
        ];
        for (v, want) in cases {
            assert_eq!(hex(&to_vec(v, &[])), *want, "{v}");
        }
        let s = "x".repeat(40);
        assert_eq!(&hex(&to_vec(&json!(s), &[]))[..4], "d928");
        let a: Vec<u8> = (0..20).collect();
        assert_eq!(&hex(&to_vec(&json!(a), &[]))[..6], "dc0014");
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value_and_no_orphan_binary() {
        // {"a": bin [1], "a": 2, "b": bin [3]}
        let input = [
            0x83, 0xa1, b'a', 0xc4, 1, 1, 0xa1, b'a', 2, 0xa1, b'b', 0xc4, 1, 3,
        ];
        let (v, bins) = decode(&input).expect("decodes");
        assert_eq!(v, json!({"a": 2, "b": {"_placeholder": true, "num": 0}}));
        assert_eq!(bins, [Bytes::from_static(&[3])]);
        let again = to_vec(&v, &bins);
        assert_eq!(decode(&again).expect("decodes"), (v, bins));
    }

    #[test]
    fn placeholders_become_bin_and_back() {
        let v = json!(["ev", {"_placeholder": true, "num": 0}, {"x": {"_placeholder": true, "num": 1}}]);
        let bins = vec![Bytes::from_static(b"\x01\x02"), Bytes::from_static(b"")];
        let bytes = to_vec(&v, &bins);
        assert_eq!(hex(&bytes), "93a26576c402010281a178c400");
        let (back, got) = decode(&bytes).expect("decodes");
        assert_eq!(back, v);
        assert_eq!(got, bins);
    }

    #[test]
    fn reads_notepack_extensions() {
        // undefined in a map is dropped, in an array it is null.
        let (v, _) = decode(&[0x82, 0xa1, b'a', 0xd4, 0, 0, 0xa1, b'b', 0x01]).expect("map");
        assert_eq!(v, json!({"b": 1}));
        let (v, _) = decode(&[0x91, 0xd4, 0, 0]).expect("array");
        assert_eq!(v, json!([null]));
        // Date(0) and an ArrayBuffer of 2 bytes.
        let (v, _) = decode(&[0xd7, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("date");
        assert_eq!(v, json!("1970-01-01T00:00:00.000Z"));
        let ms: i64 = 1_700_000_000_123;
        let mut d = vec![0xd7, 0];
        d.extend_from_slice(&((ms >> 32) as i32).to_be_bytes());
        d.extend_from_slice(&(ms as u32).to_be_bytes());
        assert_eq!(
            decode(&d).expect("date").0,
            json!("2023-11-14T22:13:20.123Z")
        );
        let (v, bins) = decode(&[0xc7, 2, 0, 9, 8]).expect("arraybuffer");
        assert_eq!(v, placeholder(0));
        assert_eq!(bins, vec![Bytes::from_static(&[9, 8])]);
        let (v, _) = decode(&[0xca, 0x3f, 0xc0, 0, 0]).expect("float32");
        assert_eq!(v, json!(1.5));
        // Integral floats are JavaScript numbers like any other: integers in JSON.
        let (v, _) = decode(&[0xcb, 0xc0, 0, 0, 0, 0, 0, 0, 0]).expect("float64");
        assert_eq!(v, json!(-2));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            &[0xc1][..],
            &[0x92, 0x01],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01],
            &[0xa2, 0xff, 0xfe],
            &[0x01, 0x02],
            &[0x81, 0x90, 0x01],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep = vec![0x91; MAX_DEPTH + 2];
        assert_eq!(decode(&deep), Err(DecodeError("too deep")));
    }

    #[test]
    fn round_trips_json() {
        let v = json!({"a": [1, -2, 3.25, "é", null, {"b": [true, false]}], "c": u64::MAX, "d": i64::MIN});
        assert_eq!(decode(&to_vec(&v, &[])).expect("decodes").0, v);
    }
}
