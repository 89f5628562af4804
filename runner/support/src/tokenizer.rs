//! Tokenizers: count tokens and turn token ids back into text.
//!
//! The default tokenizer is `cl100k_base`, embedded in the binary (no network): the BPE that
//! Llama 3's tokenizer extends, so counts are close for the models SambaNova serves. A Hugging
//! Face `tokenizer.json` can replace it ([`Tokenizer::from_file`]). Either way counts exclude
//! special tokens such as BOS (the kit counted a BOS per text, kit-reference 8.5). This module
//! only tokenizes; building prompts of an exact length is [`crate::prompt`]'s job.

use std::path::{Path, PathBuf};

use tiktoken_rs::CoreBPE;

/// Counts the tokens of a text. Implemented by every tokenizer coebench can use.
pub trait TokenCounter: Send + Sync {
    /// Number of tokens in `text`, without special tokens such as BOS.
    fn count_tokens(&self, text: &str) -> usize;
}

/// A tokenizer coebench can size prompts and count tokens with.
pub struct Tokenizer {
    inner: Inner,
}

enum Inner {
    /// The embedded `cl100k_base` BPE.
    Tiktoken(&'static CoreBPE),
    /// A Hugging Face `tokenizer.json`, with the path it was read from.
    HuggingFace(Box<tokenizers::Tokenizer>, PathBuf),
}

/// A `tokenizer.json` that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot load tokenizer {path}: {cause}; pass the path of a Hugging Face `tokenizer.json` \
     (for example from the model's repository), or omit it to use the embedded cl100k_base"
)]
pub struct TokenizerError {
    /// The file that was read.
    pub path: PathBuf,
    /// Why it could not be used.
    pub cause: String,
}

impl Tokenizer {
    /// The embedded `cl100k_base` tokenizer. The first call parses its tables (tens of ms).
    pub fn embedded() -> Self {
        Tokenizer {
            inner: Inner::Tiktoken(tiktoken_rs::cl100k_base_singleton()),
        }
    }

    /// A Hugging Face tokenizer read from a `tokenizer.json` file.
    ///
    /// Fails, naming the path, when the file cannot be read or is not a tokenizer definition.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TokenizerError {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
        let tokenizer = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError {
            path: path.to_path_buf(),
            cause: format!("not a valid tokenizer.json: {e}"),
        })?;
        Ok(Tokenizer {
            inner: Inner::HuggingFace(Box::new(tokenizer), path.to_path_buf()),
        })
    }

    /// Token ids of `text`, without special tokens. A text the tokenizer cannot encode (which a
    /// well-formed `tokenizer.json` never refuses) yields no ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.inner {
            Inner::Tiktoken(bpe) => bpe.encode_ordinary(text),
            Inner::HuggingFace(tok, _) => match tok.encode_fast(text, false) {
                Ok(encoding) => encoding.get_ids().to_vec(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 are replaced lossily, and ids
    /// the tokenizer does not know decode to nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        match &self.inner {
            Inner::Tiktoken(bpe) => match bpe.decode_bytes(ids) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => String::new(),
            },
            Inner::HuggingFace(tok, _) => tok.decode(ids, false).unwrap_or_default(),
        }
    }

    /// How many tokens the tokenizer adds to every text it encodes for a model: 1 for a
    /// `tokenizer.json` whose post-processor prepends a BOS (Llama 3's `<|begin_of_text|>`),
    /// 0 for `cl100k_base` and tokenizers without special tokens. A server counts them in a
    /// prompt, as the kit's client does (`len(tokenizer.encode(text))`), so prompts are sized
    /// to `inputTokens` minus these (kit-reference: prompts are cut to `input_tokens - 1`
    /// text tokens for a BOS-adding tokenizer).
    pub fn special_tokens_added(&self) -> usize {
        match &self.inner {
            Inner::Tiktoken(_) => 0,
            Inner::HuggingFace(tok, _) => {
                let count = |special: bool| {
                    tok.encode_fast("a", special)
                        .map_or(0, |encoding| encoding.get_ids().len())
                };
                count(true).saturating_sub(count(false))
            }
        }
    }

    /// A short name for logs and reports: `cl100k_base` or the `tokenizer.json` path.
    pub fn name(&self) -> String {
        match &self.inner {
            Inner::Tiktoken(_) => "cl100k_base".to_string(),
            Inner::HuggingFace(_, path) => path.display().to_string(),
        }
    }
}

impl TokenCounter for Tokenizer {
    fn count_tokens(&self, text: &str) -> usize {
        match &self.inner {
            Inner::Tiktoken(bpe) => bpe.encode_ordinary(text).len(),
            Inner::HuggingFace(..) => self.encode(text).len(),
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.name())
    }
}

/// A small tokenizer for tests of code that loads `tokenizer.json` files (feature `fixtures`,
/// enabled by the workspace's test builds only).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    /// The characters GPT-2's byte-level alphabet maps each byte to.
    fn byte_level_alphabet() -> Vec<char> {
        let printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
        let mut chars = vec!['\0'; 256];
        let mut extra = 0;
        for b in 0..256u32 {
            let c = if printable.contains(&b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            chars[b as usize] = char::from_u32(c).unwrap();
        }
        chars
    }

    /// A small byte-level BPE `tokenizer.json`: every byte is a token, plus a few merges, so
    /// decode/re-encode can merge tokens across a cut like a real BPE.
    pub fn small_bpe_json() -> String {
        let alphabet = byte_level_alphabet();
        let mut vocab = serde_json::Map::new();
        for c in &alphabet {
            let id = vocab.len();
            vocab.insert(c.to_string(), id.into());
        }
        let pairs = [
            ("Ġ", "t"),
            ("h", "e"),
            ("Ġt", "he"),
            ("i", "n"),
            ("e", "r"),
            ("Ġ", "a"),
            ("o", "n"),
            ("r", "e"),
            ("Ġ", "s"),
            ("e", "n"),
            ("Ġ", "c"),
            ("a", "t"),
            ("o", "r"),
            ("in", "g"),
        ];
        let mut merges = Vec::new();
        for (a, b) in pairs {
            let merged = format!("{a}{b}");
            let id = vocab.len();
            vocab.insert(merged, id.into());
            merges.push(serde_json::json!([a, b]));
        }
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::small_bpe_json;
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

    #[test]
    fn hugging_face_file_loads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, small_bpe_json()).unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        let text = "the theory of routing: experts, tokens and caches";
        let ids = tok.encode(text);
        assert!(ids.len() < text.len(), "merges apply: {ids:?}");
        assert_eq!(tok.decode(&ids), text);
        assert_eq!(tok.count_tokens(text), ids.len());
        assert!(format!("{tok:?}").contains("tokenizer.json"));
    }

    #[test]
    fn special_tokens_are_counted_from_the_post_processor() {
        assert_eq!(Tokenizer::embedded().special_tokens_added(), 0);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, small_bpe_json()).unwrap();
        assert_eq!(
            Tokenizer::from_file(&plain).unwrap().special_tokens_added(),
            0
        );
        // The same BPE with a BOS template, as Llama 3's tokenizer.json has.
        let mut json: serde_json::Value = serde_json::from_str(&small_bpe_json()).unwrap();
        let bos_id = json["model"]["vocab"].as_object().unwrap().len();
        json["added_tokens"] = serde_json::json!([{"id": bos_id, "content": "<s>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}]);
        json["post_processor"] = serde_json::json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [bos_id], "tokens": ["<s>"]}}});
        let bos = dir.path().join("bos.json");
        std::fs::write(&bos, json.to_string()).unwrap();
        let tok = Tokenizer::from_file(&bos).unwrap();
        assert_eq!(tok.special_tokens_added(), 1);
        // Counts stay without special tokens.
        assert_eq!(
            tok.count_tokens("the"),
            Tokenizer::from_file(&plain).unwrap().count_tokens("the")
        );
    }

    #[test]
    fn load_errors_name_the_path_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = Tokenizer::from_file(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"model\": 3}").unwrap();
        let err = Tokenizer::from_file(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.json") && err.contains("not a valid"),
            "{err}"
        );
    }
}
