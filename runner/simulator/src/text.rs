//! Generated text: deterministic words from a small vocabulary in which every word, with its
//! leading space, is exactly one `cl100k_base` token, so a client counting the text gets the
//! number of tokens the simulator reports. Nothing here knows about timing or wire formats.

/// Words of one `cl100k_base` token each when preceded by a space.
const VOCAB: &[&str] = &[
    " the", " model", " data", " system", " time", " value", " first", " large", " small",
    " token", " result", " method", " process", " group", " number", " point", " water", " light",
    " world", " house", " river", " music", " paper", " green", " story", " table", " field",
    " power", " market", " energy", " simple", " common", " public", " local", " early", " clear",
    " quick", " strong", " open", " free", " new", " old", " good", " high", " long", " great",
    " right", " state", " city", " line", " form", " order", " level",
];

/// Text of tokens `from..to` of the completion of the request with text key `key`; token `i`
/// is always the same word for the same key.
pub(crate) fn words(key: u64, from: u32, to: u32) -> String {
    let mut out = String::with_capacity((to.saturating_sub(from) as usize) * 7);
    for i in from..to {
        out.push_str(word(key, i));
    }
    out
}

/// Appends the text of tokens `from..to` (see [`words`]) to `out`, without allocating.
pub(crate) fn push_words(key: u64, from: u32, to: u32, out: &mut Vec<u8>) {
    for i in from..to {
        out.extend_from_slice(word(key, i).as_bytes());
    }
}

/// Token `i` of the completion with text key `key`.
pub(crate) fn word(key: u64, i: u32) -> &'static str {
    let n = VOCAB.len() as u64;
    let index = (key % n + u64::from(i) * 17 + u64::from(i / 3) * 5) % n;
    VOCAB[index as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use coebench_support::tokenizer::{TokenCounter, Tokenizer};

    #[test]
    fn every_word_is_one_token_and_so_is_every_sequence() {
        let tok = Tokenizer::embedded();
        for w in VOCAB {
            assert_eq!(tok.count_tokens(w), 1, "{w:?}");
        }
        for key in [0u64, 7, 12345] {
            assert_eq!(tok.count_tokens(&words(key, 0, 200)), 200);
        }
    }

    #[test]
    fn text_is_deterministic_and_sliceable() {
        assert_eq!(
            words(3, 0, 10),
            format!("{}{}", words(3, 0, 4), words(3, 4, 10))
        );
        assert_ne!(words(3, 0, 10), words(4, 0, 10));
        let mut out = Vec::new();
        push_words(3, 2, 7, &mut out);
        assert_eq!(out, words(3, 2, 7).into_bytes());
    }
}
