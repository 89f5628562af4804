//! Tokenizers: count tokens and size prompts to an exact token count.
//!
//! The default tokenizer is embedded in the binary (no network); a Hugging Face
//! `tokenizer.json` can replace it.

/// Counts the tokens of a text. Implemented by every tokenizer coebench can use.
pub trait TokenCounter: Send + Sync {
    /// Number of tokens in `text`, without special tokens such as BOS.
    fn count_tokens(&self, text: &str) -> usize;
}
