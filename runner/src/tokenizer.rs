//! Tokenizers: count tokens and turn token ids back into text.
//!
//! The default tokenizer is `cl100k_base`, embedded in the binary (no network): the BPE that
//! Llama 3's tokenizer extends, so counts are close for the models SambaNova serves. A Hugging
//! Face `tokenizer.json` can replace it.

use tiktoken_rs::CoreBPE;

/// Counts the tokens of a text. Implemented by every tokenizer coebench can use.
pub trait TokenCounter: Send + Sync {
    /// Number of tokens in `text`, without special tokens such as BOS.
    fn count_tokens(&self, text: &str) -> usize;
}

/// A tokenizer coebench can size prompts and count tokens with.
pub struct Tokenizer {
    bpe: &'static CoreBPE,
}

impl Tokenizer {
    /// The embedded `cl100k_base` tokenizer. The first call parses its tables (tens of ms).
    pub fn embedded() -> Self {
        Tokenizer {
            bpe: tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 are replaced lossily.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self.bpe.decode_bytes(ids) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        }
    }
}

impl TokenCounter for Tokenizer {
    fn count_tokens(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(cl100k_base)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_round_trips() {
        let tok = Tokenizer::embedded();
        let ids = tok.encode("Hello, composition of experts!");
        assert!(ids.len() >= 5);
        assert_eq!(tok.decode(&ids), "Hello, composition of experts!");
        assert_eq!(
            tok.count_tokens("Hello, composition of experts!"),
            ids.len()
        );
    }
}
