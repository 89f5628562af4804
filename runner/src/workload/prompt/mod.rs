//! Prompts of an exact token length, and which prompt each request sends.
//!
//! Rows with a `dataset` send its prompts instead, as they are ([`dataset`]).
//!
//! The texts are coebench's own (module `texts`), embedded in the binary. [`exact_prompt`] repeats a
//! text and cuts it at a token boundary so that the tokenizer counts exactly N tokens, fixing up
//! the cut when decoding and re-encoding merges or splits tokens (kit-reference 2.2; unlike the
//! kit it never fails on a text that is already exact, defect 8.4). [`PromptBuilder`] builds each
//! (prompt, length) pair once per run and shares it; [`PromptSelection`] decides, from a seed
//! and the request index alone, which prompt a request sends. The prompt is sent as the user
//! message: the server adds its chat template, so its own prompt count is larger.
//! Only reading a dataset ([`dataset::DatasetPrompts::read`]) does I/O.

pub mod dataset;
mod texts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use texts::{DEFAULT, MULTIPLE, PromptTemplate, VISION, by_name};

use coebench_support::tokenizer::{TokenCounter, Tokenizer};

/// How many times the cut is moved before falling back to a search over character prefixes.
const MAX_FIXUPS: usize = 24;

/// A prompt text cut to an exact number of tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPrompt {
    /// The name recorded with each request as `prompt_name` ([`recorded_name`]).
    pub name: &'static str,
    /// The text sent as the user message.
    pub text: Arc<str>,
    /// Its length in tokens as the model counts it: the text's tokens plus the special tokens
    /// the tokenizer adds ([`text_tokens_for`]); always the requested length.
    pub tokens: u32,
}

/// The `prompt_name` a request of `template` records: its name, except the vision prompt's,
/// which is `default` as in the kit (its vision prompt file names its one prompt `default`).
pub fn recorded_name(template: &PromptTemplate) -> &'static str {
    if template.name == VISION.name {
        DEFAULT.name
    } else {
        template.name
    }
}

/// How many text tokens a prompt of `tokens` tokens has with `tokenizer`: `tokens` less the
/// special tokens the tokenizer adds to every text (a BOS for Llama 3), so that the prompt as
/// the model's tokenizer encodes it, and as a server counts it, is `tokens` long, exactly as
/// the kit's prompts (`input_tokens - 1` text tokens plus the BOS). At least 1.
pub fn text_tokens_for(tokenizer: &Tokenizer, tokens: u32) -> u32 {
    let special = u32::try_from(tokenizer.special_tokens_added()).unwrap_or(u32::MAX);
    tokens.saturating_sub(special).max(1)
}

/// A prompt that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// A length of zero tokens was requested.
    #[error("a prompt must have at least 1 token; set inputTokens to 1 or more")]
    ZeroTokens,
    /// The template produces no tokens with this tokenizer.
    #[error("prompt `{name}` encodes to no tokens with tokenizer {tokenizer}")]
    EmptyTemplate {
        /// The template's name.
        name: String,
        /// The tokenizer's name.
        tokenizer: String,
    },
    /// No cut of the repeated text has exactly the requested length (the tokenizer never
    /// produced this count for any prefix near it).
    #[error(
        "cannot cut prompt `{name}` to exactly {tokens} tokens with tokenizer {tokenizer} \
         (closest: {closest}); try another length or another tokenizer.json"
    )]
    Unreachable {
        /// The template's name.
        name: String,
        /// The requested length.
        tokens: u32,
        /// The nearest length found.
        closest: usize,
        /// The tokenizer's name.
        tokenizer: String,
    },
}

/// `template` repeated and cut so that `tokenizer` counts exactly `tokens` tokens in the result.
///
/// Repetitions are joined with a space. `name` only labels errors.
pub fn exact_prompt(
    tokenizer: &Tokenizer,
    name: &str,
    template: &str,
    tokens: u32,
) -> Result<String, PromptError> {
    exact_prompt_after(tokenizer, name, "", template, tokens)
}

/// `prefix` followed by `template` repeated, cut so that `tokenizer` counts exactly `tokens`
/// tokens in the whole text (the prefix is kept whole when it is shorter than that).
fn exact_prompt_after(
    tokenizer: &Tokenizer,
    name: &str,
    prefix: &str,
    template: &str,
    tokens: u32,
) -> Result<String, PromptError> {
    let n = tokens as usize;
    if n == 0 {
        return Err(PromptError::ZeroTokens);
    }
    let unit = format!("{} ", template.trim());
    let per_unit = tokenizer.count_tokens(&unit);
    if per_unit == 0 {
        return Err(PromptError::EmptyTemplate {
            name: name.to_string(),
            tokenizer: tokenizer.name(),
        });
    }
    // Two spare repetitions so that a cut moved forward still has text after it.
    let text = format!("{prefix}{}", unit.repeat(n / per_unit + 2));
    let ids = tokenizer.encode(&text);
    let mut closest = 0usize;
    let mut cut = n.min(ids.len());
    let mut tried = Vec::with_capacity(MAX_FIXUPS);
    for _ in 0..MAX_FIXUPS {
        if cut == 0 || tried.contains(&cut) {
            break;
        }
        tried.push(cut);
        let candidate = tokenizer.decode(&ids[..cut]);
        let count = tokenizer.count_tokens(&candidate);
        if count == n {
            return Ok(candidate);
        }
        if count.abs_diff(n) < closest.abs_diff(n) || closest == 0 {
            closest = count;
        }
        // Move the cut by the miss; the re-encoded length tracks the cut almost one for one.
        cut = (cut + n).saturating_sub(count).min(ids.len());
    }
    search_char_prefixes(tokenizer, &text, n).ok_or_else(|| PromptError::Unreachable {
        name: name.to_string(),
        tokens,
        closest,
        tokenizer: tokenizer.name(),
    })
}

/// Fallback: the character prefix of `text` with exactly `n` tokens, if one is near the
/// longest prefix of at most `n` tokens (token counts of prefixes grow almost monotonically).
fn search_char_prefixes(tokenizer: &Tokenizer, text: &str, n: usize) -> Option<String> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let count = |k: usize| tokenizer.count_tokens(&text[..bounds[k]]);
    let (mut lo, mut hi) = (0usize, bounds.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if count(mid) <= n {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let window = 64usize;
    (lo.saturating_sub(window)..=(lo + window).min(bounds.len() - 1))
        .find(|&k| count(k) == n)
        .map(|k| text[..bounds[k]].to_string())
}

/// Builds prompts with one tokenizer, each distinct (prompt, length) once, and shares them.
#[derive(Debug)]
pub struct PromptBuilder {
    tokenizer: Arc<Tokenizer>,
    cache: Mutex<HashMap<(&'static str, u32), Arc<BuiltPrompt>>>,
}

impl PromptBuilder {
    /// A builder that sizes prompts with `tokenizer`.
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        PromptBuilder {
            tokenizer,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tokenizer prompts are sized with.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// `template` cut to exactly `tokens` tokens; built on first use, then shared.
    pub fn build(
        &self,
        template: &'static PromptTemplate,
        tokens: u32,
    ) -> Result<Arc<BuiltPrompt>, PromptError> {
        // Building under the lock keeps concurrent first uses from building twice; builds
        // happen once per row, before its requests.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(built) = cache.get(&(template.name, tokens)) {
            return Ok(Arc::clone(built));
        }
        let text_tokens = text_tokens_for(&self.tokenizer, tokens);
        let text = exact_prompt(&self.tokenizer, template.name, template.text, text_tokens)?;
        let built = Arc::new(BuiltPrompt {
            name: recorded_name(template),
            text: text.into(),
            tokens,
        });
        cache.insert((template.name, tokens), Arc::clone(&built));
        Ok(built)
    }

    /// `template` cut to exactly `tokens` tokens after a prefix drawn from `tag` (for example
    /// `"482177: "`), so prompts with different tags share no prefix a server
    /// could cache beyond its chat template. Not cached: each tag is one request's. A prompt
    /// too short to hold the prefix and one token of text is the shared, untagged one.
    pub fn build_tagged(
        &self,
        template: &'static PromptTemplate,
        tokens: u32,
        tag: u64,
    ) -> Result<Arc<BuiltPrompt>, PromptError> {
        let prefix = tag_prefix(tag);
        let text_tokens = text_tokens_for(&self.tokenizer, tokens);
        if self.tokenizer.count_tokens(&prefix) >= text_tokens as usize {
            return self.build(template, tokens);
        }
        let text = exact_prompt_after(
            &self.tokenizer,
            template.name,
            &prefix,
            template.text,
            text_tokens,
        )?;
        Ok(Arc::new(BuiltPrompt {
            name: recorded_name(template),
            text: text.into(),
            tokens,
        }))
    }
}

/// The unique opening of a tagged prompt: six digits drawn from the tag, first, so the first
/// token already differs between requests (a few tokens with any tokenizer).
fn tag_prefix(tag: u64) -> String {
    format!("{:06}: ", splitmix64(tag) % 1_000_000)
}

/// The tag of request `request_index` in a row seeded `seed`.
pub fn request_tag(seed: u64, request_index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(request_index ^ 0x7461_6773))
}

/// Which prompt the requests of a row send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptSelection {
    /// Every request sends the default prompt.
    Default,
    /// Every request sends the vision prompt (rows that send an image).
    Vision,
    /// Each request draws one of the twenty varied prompts, from the seed and its index.
    Multiple {
        /// The run's seed.
        seed: u64,
    },
}

impl PromptSelection {
    /// The selection for a row: vision when it sends an image (varied prompts are text-only,
    /// as in the kit), else varied prompts when `use_multiple_prompts`, else the default.
    pub fn for_row(use_multiple_prompts: bool, multimodal: bool, seed: u64) -> Self {
        match (multimodal, use_multiple_prompts) {
            (true, _) => PromptSelection::Vision,
            (false, true) => PromptSelection::Multiple { seed },
            (false, false) => PromptSelection::Default,
        }
    }

    /// The template request number `request_index` sends. Deterministic: the same seed and
    /// index always give the same prompt, whatever order requests are sent in.
    pub fn template(self, request_index: u64) -> &'static PromptTemplate {
        match self {
            PromptSelection::Default => &DEFAULT,
            PromptSelection::Vision => &VISION,
            PromptSelection::Multiple { seed } => {
                let draw = splitmix64(seed ^ splitmix64(request_index));
                // Multiply-shift maps the 64-bit draw uniformly onto the prompts.
                let index = ((u128::from(draw) * MULTIPLE.len() as u128) >> 64) as usize;
                &MULTIPLE[index]
            }
        }
    }
}

/// SplitMix64: a fixed, well-mixed hash of one word, stable across library versions.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENGTHS: [u32; 7] = [1, 2, 7, 100, 1000, 3900, 16000];

    fn check_exact(tok: &Tokenizer, template: &PromptTemplate, lengths: &[u32]) {
        for &n in lengths {
            let text = exact_prompt(tok, template.name, template.text, n).unwrap();
            assert_eq!(
                tok.count_tokens(&text),
                n as usize,
                "{} at {n}",
                template.name
            );
        }
    }

    #[test]
    fn embedded_tokenizer_gives_exact_lengths() {
        let tok = Tokenizer::embedded();
        check_exact(&tok, &DEFAULT, &LENGTHS);
        check_exact(&tok, &VISION, &[1, 2, 7, 100, 1000]);
        for template in &MULTIPLE {
            check_exact(&tok, template, &[1, 3, 57, 333]);
        }
    }

    #[test]
    fn hugging_face_tokenizer_gives_exact_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(
            &path,
            coebench_support::tokenizer::fixtures::small_bpe_json(),
        )
        .unwrap();
        let tok = Tokenizer::from_file(&path).unwrap();
        check_exact(&tok, &DEFAULT, &LENGTHS);
        check_exact(&tok, &MULTIPLE[4], &[1, 2, 7, 100, 999]);
    }

    #[test]
    fn tagged_prompts_are_exact_and_differ_from_their_first_token() {
        let builder = PromptBuilder::new(Arc::new(Tokenizer::embedded()));
        let tok = builder.tokenizer().clone();
        for tokens in [16, 128, 1000] {
            let a = builder
                .build_tagged(&DEFAULT, tokens, request_tag(7, 0))
                .unwrap();
            let b = builder
                .build_tagged(&DEFAULT, tokens, request_tag(7, 1))
                .unwrap();
            assert_eq!(tok.count_tokens(&a.text), tokens as usize);
            assert_eq!(tok.count_tokens(&b.text), tokens as usize);
            assert_ne!(
                tok.encode(&a.text)[0],
                tok.encode(&b.text)[0],
                "{} / {}",
                a.text,
                b.text
            );
        }
        // Too short for a tag: the shared prompt.
        let short = builder
            .build_tagged(&DEFAULT, 2, request_tag(7, 0))
            .unwrap();
        assert_eq!(short, builder.build(&DEFAULT, 2).unwrap());
        assert_eq!(request_tag(7, 3), request_tag(7, 3));
    }

    #[test]
    fn text_already_exact_is_kept() {
        let tok = Tokenizer::embedded();
        let n = tok.count_tokens(DEFAULT.text.trim()) as u32;
        let text = exact_prompt(&tok, "default", DEFAULT.text, n).unwrap();
        assert_eq!(text, DEFAULT.text.trim());
        // A template shorter than one token of context still works at its own length.
        assert_eq!(exact_prompt(&tok, "x", "Hello", 1).unwrap(), "Hello");
    }

    #[test]
    fn zero_and_empty_are_errors() {
        let tok = Tokenizer::embedded();
        assert_eq!(
            exact_prompt(&tok, "d", "text", 0),
            Err(PromptError::ZeroTokens)
        );
        let err = exact_prompt(&tok, "blank", "   ", 5).unwrap_err();
        assert!(err.to_string().contains("blank"), "{err}");
    }

    #[test]
    fn character_search_finds_exact_prefixes() {
        let tok = Tokenizer::embedded();
        let text = DEFAULT.text.repeat(3);
        for n in [1, 2, 40, 400] {
            let found = search_char_prefixes(&tok, &text, n).unwrap();
            assert_eq!(tok.count_tokens(&found), n);
        }
    }

    #[test]
    fn vision_prompts_are_recorded_as_the_kits_default() {
        let builder = PromptBuilder::new(Arc::new(Tokenizer::embedded()));
        let vision = builder.build(&VISION, 40).unwrap();
        let text = builder.build(&DEFAULT, 40).unwrap();
        assert_eq!(vision.name, "default");
        assert_ne!(
            vision.text, text.text,
            "the cache keeps the two prompts apart"
        );
        let tagged = builder
            .build_tagged(&VISION, 40, request_tag(1, 2))
            .unwrap();
        assert_eq!(tagged.name, "default");
    }

    #[test]
    fn builder_shares_each_prompt_and_length() {
        let builder = PromptBuilder::new(Arc::new(Tokenizer::embedded()));
        let a = builder.build(&DEFAULT, 50).unwrap();
        let b = builder.build(&DEFAULT, 50).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((a.name, a.tokens), ("default", 50));
        let c = builder.build(&MULTIPLE[0], 50).unwrap();
        assert_eq!(c.name, "prompt1");
        assert_ne!(a.text, c.text);
    }

    #[test]
    fn multiple_prompts_are_deterministic_under_a_seed() {
        let pick = |seed| {
            let sel = PromptSelection::for_row(true, false, seed);
            (0..200).map(|i| sel.template(i).name).collect::<Vec<_>>()
        };
        assert_eq!(pick(7), pick(7));
        assert_ne!(pick(7), pick(8));
        let names = pick(7);
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert!(distinct.len() >= 15, "{distinct:?}");
        assert!(names.iter().all(|n| by_name(n).is_some()));
        assert_eq!(
            PromptSelection::for_row(true, true, 1).template(3).name,
            "vision"
        );
        assert_eq!(
            PromptSelection::for_row(false, false, 1).template(3).name,
            "default"
        );
    }
}
