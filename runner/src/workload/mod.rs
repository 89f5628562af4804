//! What a row's requests send: prompts of an exact token length and which one each request
//! sends ([`prompt`]), and the deterministic images of multimodal rows ([`image`]). Built
//! before a row starts; nothing here sends or measures.

pub mod image;
pub mod prompt;
