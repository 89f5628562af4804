//! What a row's requests send: prompts of an exact token length and which one each request
//! sends ([`prompt`]), the deterministic images of multimodal rows ([`image`]), and which
//! tokenizer sizes each model's prompts ([`tokenizers`], the one part that may download: a
//! model's `tokenizer.json` from Hugging Face, once, before the run). Built before a row
//! starts; nothing here sends requests or measures.

pub mod image;
pub mod prompt;
pub mod tokenizers;
