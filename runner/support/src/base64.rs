//! Base64 (RFC 4648), the only encoding the crate needs: image data URLs, the Pushgateway's
//! `@base64` label values, and the simulator's reading of images. Small enough not to need a
//! dependency.

/// Which 64 characters encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `A-Z a-z 0-9 + /` (section 4).
    Standard,
    /// `A-Z a-z 0-9 - _`, safe in URLs and file names (section 5).
    UrlSafe,
}

impl Alphabet {
    fn table(self) -> &'static [u8; 64] {
        match self {
            Alphabet::Standard => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            }
            Alphabet::UrlSafe => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            }
        }
    }
}

/// Appends the padded encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], alphabet: Alphabet, out: &mut String) {
    let table = alphabet.table();
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |shift: u32| char::from(table[(n >> shift & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
}

/// The padded encoding of `bytes`.
pub fn encode(bytes: &[u8], alphabet: Alphabet) -> String {
    let mut out = String::new();
    encode_into(bytes, alphabet, &mut out);
    out
}

/// Decodes either alphabet (padding optional, ASCII whitespace ignored); the error is the
/// position of the first byte that is not base64.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for (pos, &c) in input.iter().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(pos),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_test_vectors_both_ways() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes(), Alphabet::Standard), encoded);
            assert_eq!(decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(b"\xfb\xff", Alphabet::UrlSafe), "-_8=");
        assert_eq!(encode(b"\xfb\xff", Alphabet::Standard), "+/8=");
        assert_eq!(decode(b"-_8").unwrap(), b"\xfb\xff");
        assert_eq!(decode(b"ab$c"), Err(2));
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(
            decode(encode(&data, Alphabet::Standard).as_bytes()).unwrap(),
            data
        );
    }
}
