//! Removing secrets from text that came from outside (a server's error body, an echoed URL)
//! before it is stored, logged or printed.
//!
//! A [`Redactor`] replaces with `***`:
//! - every run of [`MIN_SECRET_LEN`] or more consecutive characters of the API key, compared
//!   case-insensitively, whether the text holds them plainly, JSON-escaped (`\u002d`, `\/`) or
//!   URL-encoded (`%2D`), or any mix;
//! - credentials in URLs: the user info of `scheme://user:pass@host`, and the values of query
//!   parameters named like a credential (`token=`, `key=`, `api_key=`, `access_token=`, ...).
//!
//! Redact before cutting text short: a cut through a key leaves a fragment shorter than the key
//! that whole-key matching no longer finds. A key shorter than [`MIN_SECRET_LEN`] is not a
//! secret worth hiding (local servers are often run with `x` or `1`): it is left alone rather
//! than substituted character by character through ordinary text.

/// Keys shorter than this are not treated as secrets; runs of at least this many characters of
/// a longer key are redacted wherever they appear.
pub const MIN_SECRET_LEN: usize = 8;

/// What replaces a secret.
const MASK: &str = "***";

/// Query parameters whose values are credentials (compared case-insensitively; `-` and `_`
/// ignored, so `api-key`, `api_key` and `apikey` are one name).
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "accesstoken",
    "authtoken",
    "password",
    "secret",
    "sig",
    "signature",
];

/// Removes one API key (and URL credentials) from text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// The key, lower-cased, when it is long enough to be treated as a secret.
    key: Option<Vec<char>>,
}

impl Redactor {
    /// A redactor of `key`. An empty key, or one shorter than [`MIN_SECRET_LEN`] characters,
    /// is not redacted (URL credentials still are).
    pub fn for_key(key: &str) -> Self {
        let chars: Vec<char> = key.chars().map(fold).collect();
        Redactor {
            key: (chars.len() >= MIN_SECRET_LEN).then_some(chars),
        }
    }

    /// A redactor of URL credentials only.
    pub fn without_key() -> Self {
        Redactor::default()
    }

    /// `text` with the key's fragments and URL credentials replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let without_key = match &self.key {
            Some(key) => mask_fragments(text, key),
            None => text.to_string(),
        };
        redact_url_credentials(&without_key)
    }
}

/// Case folding for comparisons (ASCII and the first lower-case form of other characters).
fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// One character of the text as decoded from its escapes, with the bytes it spans.
struct Decoded {
    c: char,
    start: usize,
    end: usize,
}

/// The text's characters with JSON escapes (`\u` and four hex digits, `\/`, `\\`, `\"`) and
/// URL escapes (`%` and two hex digits) decoded, each mapped to the bytes it came from.
fn decode(text: &str) -> Vec<Decoded> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let (c, len) = decode_at(text, i);
        out.push(Decoded {
            c: fold(c),
            start: i,
            end: i + len,
        });
        i += len;
    }
    out
}

/// The character starting at byte `i` of `text` and how many bytes it takes, escapes decoded.
fn decode_at(text: &str, i: usize) -> (char, usize) {
    let bytes = text.as_bytes();
    let hex = |from: usize, len: usize| {
        text.get(from..from + len)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
    };
    match bytes[i] {
        b'\\' => match bytes.get(i + 1) {
            Some(b'u') => {
                if let Some(c) = hex(i + 2, 4) {
                    return (c, 6);
                }
            }
            Some(&b @ (b'/' | b'\\' | b'"')) => return (char::from(b), 2),
            _ => {}
        },
        b'%' => {
            if let Some(c) = hex(i + 1, 2).filter(char::is_ascii) {
                return (c, 3);
            }
        }
        _ => {}
    }
    let c = text[i..].chars().next().unwrap_or('\u{fffd}');
    (c, c.len_utf8())
}

/// `text` with every run of at least [`MIN_SECRET_LEN`] decoded characters that also occurs in
/// `key` replaced by `***`.
fn mask_fragments(text: &str, key: &[char]) -> String {
    let decoded = decode(text);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < decoded.len() {
        let longest = (0..key.len())
            .filter(|&j| key[j] == decoded[i].c)
            .map(|j| {
                decoded[i..]
                    .iter()
                    .zip(&key[j..])
                    .take_while(|(d, k)| d.c == **k)
                    .count()
            })
            .max()
            .unwrap_or(0);
        if longest >= MIN_SECRET_LEN {
            let (start, end) = (decoded[i].start, decoded[i + longest - 1].end);
            match spans.last_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(end),
                _ => spans.push((start, end)),
            }
            // A fragment may start inside this one (a key repeating itself): look again from
            // the next character, the spans merge.
        }
        i += 1;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with the user info of every `scheme://user:pass@host` and the values of
/// credential-named query parameters replaced by `***`.
pub fn redact_url_credentials(text: &str) -> String {
    redact_params(&redact_user_info(text))
}

/// Whether `c` ends the authority or value of a URL quoted in text.
fn ends_url_part(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | ',' | ';' | ')' | ']' | '}'
        )
}

fn redact_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_len = tail
            .find(|c: char| ends_url_part(c) || matches!(c, '/' | '?' | '#'))
            .unwrap_or(tail.len());
        let authority = &tail[..authority_len];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_len..];
    }
    out.push_str(rest);
    out
}

fn redact_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let name_start = head
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name: String = head[name_start..]
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        out.push_str(head);
        out.push('=');
        let value = &tail[1..];
        let value_len = value
            .find(|c: char| ends_url_part(c) || matches!(c, '&' | '#'))
            .unwrap_or(value.len());
        let is_credential = CREDENTIAL_PARAMS
            .iter()
            .any(|p| name == *p || (p.len() > 3 && name.ends_with(p)));
        if is_credential && value_len > 0 {
            out.push_str(MASK);
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const KEY: &str = "sk-Abc123-Def456-Ghi789";

    #[test]
    fn the_whole_key_and_its_fragments_go_case_insensitively() {
        let r = Redactor::for_key(KEY);
        assert_eq!(r.redact(&format!("Bearer {KEY}!")), "Bearer ***!");
        assert_eq!(r.redact("tail: c123-Def456 end"), "tail: *** end");
        assert_eq!(r.redact("SK-ABC123-DEF456-GHI789"), "***");
        // Seven characters are not a fragment worth hiding.
        assert_eq!(r.redact("c123-De"), "c123-De");
    }

    #[test]
    fn json_escaped_and_url_encoded_keys_go() {
        let r = Redactor::for_key(KEY);
        let escaped = KEY.replace('-', "\\u002d");
        assert_eq!(
            r.redact(&format!("{{\"k\":\"{escaped}\"}}")),
            "{\"k\":\"***\"}"
        );
        let encoded = KEY.replace('-', "%2D");
        assert_eq!(
            r.redact(&format!("GET /?x={encoded}&y=1")),
            "GET /?x=***&y=1"
        );
        let slashed = Redactor::for_key("abc/def/ghi/jkl");
        assert_eq!(slashed.redact("\"abc\\/def\\/ghi\\/jkl\""), "\"***\"");
    }

    #[test]
    fn url_credentials_go_without_a_key() {
        let r = Redactor::without_key();
        assert_eq!(
            r.redact("GET https://bob:hunter2@h.example/v1?token=abc&model=m failed"),
            "GET https://***@h.example/v1?token=***&model=m failed"
        );
        assert_eq!(r.redact("url ...?api_key=zz#f"), "url ...?api_key=***#f");
        assert_eq!(r.redact("?Access-Token=q1 x"), "?Access-Token=*** x");
        assert_eq!(r.redact("max_tokens=5 and a=b"), "max_tokens=5 and a=b");
        // Found by the fuzzer: a multi-byte character right before a parameter name.
        assert_eq!(
            r.redact("kee\u{fffd}=alive é=1 ütoken=x"),
            "kee\u{fffd}=alive é=1 ütoken=***"
        );
    }

    #[test]
    fn short_keys_are_not_substituted_through_ordinary_text() {
        for key in ["x", "1", "e", "abcdefg"] {
            let r = Redactor::for_key(key);
            let text = "exceeds the available context size (os error 111), abcdefg";
            assert_eq!(r.redact(text), text, "key {key:?}");
        }
    }

    /// Random keys echoed (plainly, upper-cased, JSON-escaped or URL-encoded, whole or in
    /// parts) at random places: after redacting and cutting the text at a random length, no
    /// run of 6 characters of the key is left.
    #[test]
    fn no_fragment_survives_redaction_then_a_cut() {
        let mut rng = StdRng::seed_from_u64(13);
        let alphabet: Vec<char> =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+"
                .chars()
                .collect();
        for case in 0..2000 {
            let len = rng.random_range(MIN_SECRET_LEN..64);
            let key: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let form = match rng.random_range(0..4) {
                0 => key.clone(),
                1 => key.to_uppercase(),
                2 => key.replace('-', "\\u002d").replace('/', "\\/"),
                _ => key.replace('-', "%2D").replace('/', "%2F"),
            };
            let filler: String = (0..rng.random_range(0..600))
                .map(|_| alphabet[rng.random_range(0..26)])
                .collect();
            let at = rng.random_range(0..=filler.len());
            let text = format!("{}Bearer {form} {}", &filler[..at], &filler[at..]);
            let cut = rng.random_range(0..text.len() + 1);
            let redacted = Redactor::for_key(&key).redact(&text);
            let out = cut_at(&redacted, cut);
            assert_no_fragment(out, &key, case);
        }
    }

    /// `text` cut to at most `max` bytes at a character boundary, as messages are cut.
    fn cut_at(text: &str, max: usize) -> &str {
        let mut cut = max.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        &text[..cut]
    }

    fn assert_no_fragment(out: &str, key: &str, case: usize) {
        let folded_out = out.to_lowercase();
        let key: Vec<char> = key.to_lowercase().chars().collect();
        for window in key.windows(6) {
            let fragment: String = window.iter().collect();
            assert!(
                !folded_out.contains(&fragment),
                "case {case}: fragment {fragment:?} of the key in {out:?}"
            );
        }
    }
}
