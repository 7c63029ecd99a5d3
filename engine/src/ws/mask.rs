//! Payload masking (RFC 6455 §5.3).
//!
//! XOR with a 4-byte key. The portable loop is written so that the compiler turns it
//! into the widest vector instructions of the build's target (64 bytes per iteration)
//! without `unsafe`. On x86-64, where the default target only guarantees SSE2, buffers
//! of [`SIMD_THRESHOLD`] bytes or more go to an AVX-512 or AVX2 loop chosen at run time.

/// Buffers shorter than this are masked by the portable loop on every CPU: for them the
/// feature check costs more than the wider vectors save.
pub const SIMD_THRESHOLD: usize = 256;

/// XORs `buf` with `key`, where `buf` starts `offset` bytes into the masked payload.
///
/// Masking is its own inverse: the same call masks and unmasks. `offset` lets a payload
/// that arrives in pieces be unmasked piece by piece.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let key = rotate(key, (offset % 4) as usize);
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= SIMD_THRESHOLD && x86::apply(buf, key) {
        return;
    }
    portable(buf, key);
}

/// The portable loop, for a key already rotated to the start of `buf`: 8-byte words
/// (which the compiler turns into the target's vectors), then single bytes.
#[inline(always)]
fn portable(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key's phase is unchanged.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Run-time dispatch to AVX-512 or AVX2 (`std` caches the CPU feature check).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256,
        _mm256_xor_si256, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_storeu_si512,
        _mm512_xor_si512,
    };

    /// Masks `buf` with the widest vectors this CPU has; `false` if it has neither
    /// AVX-512F nor AVX2 (the caller falls back to the portable loop).
    pub(super) fn apply(buf: &mut [u8], key: [u8; 4]) -> bool {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { avx512(buf, key) };
            true
        } else if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { avx2(buf, key) };
            true
        } else {
            false
        }
    }

    /// 256 bytes per iteration in four 64-byte vectors, then the portable loop for the
    /// tail (which starts at a multiple of 4, so the key's phase is unchanged).
    #[target_feature(enable = "avx512f")]
    fn avx512(buf: &mut [u8], key: [u8; 4]) {
        let k = _mm512_set1_epi32(i32::from_ne_bytes(key));
        let mut blocks = buf.chunks_exact_mut(256);
        for block in &mut blocks {
            let p = block.as_mut_ptr().cast::<__m512i>();
            // SAFETY: `block` is 256 bytes, so `p.add(0..4)` are four in-bounds 64-byte
            // vectors; the loads and stores are unaligned ones.
            unsafe {
                let v = [
                    _mm512_loadu_si512(p),
                    _mm512_loadu_si512(p.add(1)),
                    _mm512_loadu_si512(p.add(2)),
                    _mm512_loadu_si512(p.add(3)),
                ];
                _mm512_storeu_si512(p, _mm512_xor_si512(v[0], k));
                _mm512_storeu_si512(p.add(1), _mm512_xor_si512(v[1], k));
                _mm512_storeu_si512(p.add(2), _mm512_xor_si512(v[2], k));
                _mm512_storeu_si512(p.add(3), _mm512_xor_si512(v[3], k));
            }
        }
        super::portable(blocks.into_remainder(), key);
    }

    /// 128 bytes per iteration in four 32-byte vectors, then the portable loop.
    #[target_feature(enable = "avx2")]
    fn avx2(buf: &mut [u8], key: [u8; 4]) {
        let k = _mm256_set1_epi32(i32::from_ne_bytes(key));
        let mut blocks = buf.chunks_exact_mut(128);
        for block in &mut blocks {
            let p = block.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `block` is 128 bytes, so `p.add(0..4)` are four in-bounds 32-byte
            // vectors; the loads and stores are unaligned ones.
            unsafe {
                let v = [
                    _mm256_loadu_si256(p),
                    _mm256_loadu_si256(p.add(1)),
                    _mm256_loadu_si256(p.add(2)),
                    _mm256_loadu_si256(p.add(3)),
                ];
                _mm256_storeu_si256(p, _mm256_xor_si256(v[0], k));
                _mm256_storeu_si256(p.add(1), _mm256_xor_si256(v[1], k));
                _mm256_storeu_si256(p.add(2), _mm256_xor_si256(v[2], k));
                _mm256_storeu_si256(p.add(3), _mm256_xor_si256(v[3], k));
            }
        }
        super::portable(blocks.into_remainder(), key);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Both wide paths against the portable one, where the CPU has them.
        #[test]
        #[allow(clippy::print_stdout)] // which paths ran is reported on purpose
        fn wide_paths_match_the_portable_loop() {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            // Said, not silently skipped: which wide paths this CPU could check.
            println!(
                "mask implementations checked: portable, avx2={}, avx512={}",
                std::is_x86_feature_detected!("avx2"),
                std::is_x86_feature_detected!("avx512f")
            );
            for len in [0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 1000, 4099] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
                let mut expected = data.clone();
                super::super::portable(&mut expected, key);
                if std::is_x86_feature_detected!("avx512f") {
                    let mut got = data.clone();
                    // SAFETY: checked just above.
                    unsafe { avx512(&mut got, key) };
                    assert_eq!(got, expected, "avx512 len {len}");
                }
                if std::is_x86_feature_detected!("avx2") {
                    let mut got = data.clone();
                    // SAFETY: checked just above.
                    unsafe { avx2(&mut got, key) };
                    assert_eq!(got, expected, "avx2 len {len}");
                }
            }
        }
    }
}

fn rotate(key: [u8; 4], by: usize) -> [u8; 4] {
    [
        key[by & 3],
        key[(by + 1) & 3],
        key[(by + 2) & 3],
        key[(by + 3) & 3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: u64) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[((offset + i as u64) % 4) as usize];
        }
    }

    #[test]
    fn matches_the_definition_for_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in (0..200).chain([255, 256, 257, 300, 511, 512, 513, 1000, 4097]) {
            for offset in 0..5 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let (a, rest) = pieces.split_at_mut(3);
        let (b, c) = rest.split_at_mut(130);
        apply_mask(a, key, 0);
        apply_mask(b, key, 3);
        apply_mask(c, key, 133);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
