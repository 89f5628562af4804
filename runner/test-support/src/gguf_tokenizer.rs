//! Exports the tokenizer a GGUF model file embeds (`tokenizer.ggml.*` metadata) as a Hugging Face
//! `tokenizer.json`, so prompts for a llama.cpp server can be sized with the model's own
//! tokenizer. Supports the byte-level BPE tokenizers (`tokenizer.ggml.model = gpt2`) with the
//! pre-tokenizers llama.cpp calls `gpt2` and `smollm` (SmolLM2's: digits one by one, then GPT-2's
//! split); anything else is an error naming what was found.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::{Value, json};

/// A GGUF metadata value (only what tokenizers use is kept).
#[derive(Debug, Clone)]
enum Meta {
    Int(i64),
    Text(String),
    Texts(Vec<String>),
    Ints(Vec<i64>),
    Other,
}

/// Writes `model`'s tokenizer to `out` as a `tokenizer.json`.
pub fn export(model: &Path, out: &Path) -> Result<(), String> {
    let meta = read_metadata(model)?;
    let text = |key: &str| match meta.get(key) {
        Some(Meta::Text(s)) => Some(s.clone()),
        _ => None,
    };
    let kind = text("tokenizer.ggml.model").unwrap_or_default();
    if kind != "gpt2" {
        return Err(format!(
            "tokenizer.ggml.model is `{kind}`; only gpt2 (byte-level BPE) is supported"
        ));
    }
    let pre = text("tokenizer.ggml.pre").unwrap_or_else(|| "gpt2".into());
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre.as_str() {
        "gpt2" => byte_level.clone(),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level.clone()]}),
        other => return Err(format!("tokenizer.ggml.pre `{other}` is not supported")),
    };
    let Some(Meta::Texts(tokens)) = meta.get("tokenizer.ggml.tokens") else {
        return Err("no tokenizer.ggml.tokens".into());
    };
    let Some(Meta::Texts(merges)) = meta.get("tokenizer.ggml.merges") else {
        return Err("no tokenizer.ggml.merges".into());
    };
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(Meta::Ints(t)) => t.clone(),
        _ => vec![1; tokens.len()],
    };
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    // Control (3) and user-defined (4) tokens are matched whole, before the model runs.
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| matches!(types.get(*id), Some(3 | 4)))
        .map(|(id, token)| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": types[id] == 3})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    std::fs::write(out, tokenizer.to_string()).map_err(|e| format!("{}: {e}", out.display()))
}

fn read_metadata(path: &Path) -> Result<HashMap<String, Meta>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if &magic != b"GGUF" {
        return Err(format!("{} is not a GGUF file", path.display()));
    }
    let version = u32_of(&mut r)?;
    if version < 2 {
        return Err(format!("GGUF version {version} is not supported"));
    }
    let _tensors = u64_of(&mut r)?;
    let count = u64_of(&mut r)?;
    let mut meta = HashMap::new();
    for _ in 0..count {
        let key = string(&mut r)?;
        let kind = u32_of(&mut r)?;
        meta.insert(key, value(&mut r, kind)?);
    }
    Ok(meta)
}

fn value(r: &mut impl Read, kind: u32) -> Result<Meta, String> {
    Ok(match kind {
        0 | 1 | 7 => Meta::Int(i64::from(bytes::<1>(r)?[0])),
        2 | 3 => Meta::Int(i64::from(u16::from_le_bytes(bytes(r)?))),
        4 => Meta::Int(i64::from(u32::from_le_bytes(bytes(r)?))),
        5 => Meta::Int(i64::from(i32::from_le_bytes(bytes(r)?))),
        6 => {
            bytes::<4>(r)?;
            Meta::Other
        }
        8 => Meta::Text(string(r)?),
        9 => {
            let inner = u32_of(r)?;
            let n = u64_of(r)?;
            let mut texts = Vec::new();
            let mut ints = Vec::new();
            for _ in 0..n {
                match value(r, inner)? {
                    Meta::Text(s) => texts.push(s),
                    Meta::Int(i) => ints.push(i),
                    _ => {}
                }
            }
            if inner == 8 {
                Meta::Texts(texts)
            } else {
                Meta::Ints(ints)
            }
        }
        10 | 11 => Meta::Int(i64::from_le_bytes(bytes(r)?)),
        12 => {
            bytes::<8>(r)?;
            Meta::Other
        }
        other => return Err(format!("unknown GGUF value type {other}")),
    })
}

fn bytes<const N: usize>(r: &mut impl Read) -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)
        .map_err(|e| format!("truncated GGUF metadata: {e}"))?;
    Ok(b)
}

fn u32_of(r: &mut impl Read) -> Result<u32, String> {
    Ok(u32::from_le_bytes(bytes(r)?))
}

fn u64_of(r: &mut impl Read) -> Result<u64, String> {
    Ok(u64::from_le_bytes(bytes(r)?))
}

fn string(r: &mut impl Read) -> Result<String, String> {
    let n = usize::try_from(u64_of(r)?).map_err(|e| e.to_string())?;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)
        .map_err(|e| format!("truncated GGUF string: {e}"))?;
    String::from_utf8(b).map_err(|e| format!("GGUF string is not UTF-8: {e}"))
}
