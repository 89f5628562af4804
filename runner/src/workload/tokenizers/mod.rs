//! Which tokenizer each model of a run uses, loaded once before the first request.
//!
//! For each model, the first of:
//! 1. the `options.tokenizers` entry naming it, else the first pattern matching it;
//! 2. `options.tokenizer` (every model);
//! 3. on the embedded simulator, `cl100k_base`: the simulator counts with it;
//! 4. the kit's tokenizer for the model's family ([`families`]), from Hugging Face ([`hub`]);
//! 5. the embedded `cl100k_base`, with a warning naming the model.
//!
//! A tokenizer the plan names (1, 2) that cannot be loaded stops the run before anything is
//! sent, naming the model, the tokenizer and the fix; a family default (4) that cannot be
//! loaded falls back to 5 with a warning saying why. Each distinct tokenizer is loaded once and
//! shared, with its own [`PromptBuilder`].

pub mod families;
pub mod hub;

use std::collections::HashMap;
use std::sync::Arc;

use coebench_plan::RunOptions;
use coebench_plan::tokenizers::{TokenizerSource, rule_for};
use coebench_support::tokenizer::Tokenizer;

use crate::workload::prompt::PromptBuilder;
use crate::workload::tokenizers::hub::{HubSettings, tokenizer_file};

/// Where a model's tokenizer came from, for logs and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerOrigin {
    /// An `options.tokenizers` entry.
    Mapped,
    /// `options.tokenizer`.
    RunWide,
    /// The simulator's own tokenizer.
    Simulator,
    /// The kit's tokenizer for the model's family.
    KitFamily,
    /// Nothing else applied, or the family's tokenizer could not be loaded.
    Fallback,
}

/// The tokenizer of one model, and the prompt builder that sizes with it.
#[derive(Debug, Clone)]
pub struct ModelTokenizer {
    /// Counts the model's tokens.
    pub tokenizer: Arc<Tokenizer>,
    /// Builds the model's prompts (shared by every model with the same tokenizer).
    pub prompts: Arc<PromptBuilder>,
    /// The tokenizer as the plan or the family map named it (a path, a repository, or
    /// `embedded cl100k_base`).
    pub source: String,
    /// Why this tokenizer.
    pub origin: TokenizerOrigin,
}

/// A tokenizer the plan names that cannot be used: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model:?}: cannot use tokenizer {tokenizer} ({origin}): {cause}")]
pub struct TokenizerSetupError {
    /// The model.
    pub model: String,
    /// The tokenizer value.
    pub tokenizer: String,
    /// Which option named it.
    pub origin: &'static str,
    /// Why, with the fix.
    pub cause: String,
}

/// The tokenizers of a run's models.
#[derive(Debug, Clone)]
pub struct ModelTokenizers {
    by_model: HashMap<String, ModelTokenizer>,
    embedded: ModelTokenizer,
}

/// What the plan (or the defaults) choose for one model, before loading.
#[derive(Debug, Clone)]
struct Choice {
    source: TokenizerSource,
    value: String,
    origin: TokenizerOrigin,
}

/// A loaded tokenizer, shared by the models that chose it.
type Loaded = (Arc<Tokenizer>, Arc<PromptBuilder>);

impl ModelTokenizers {
    /// Every model with the embedded tokenizer (tests, and runs that need no choice).
    pub fn embedded_only() -> ModelTokenizers {
        ModelTokenizers {
            by_model: HashMap::new(),
            embedded: embedded_entry(TokenizerOrigin::Fallback, embedded_loaded()),
        }
    }

    /// Chooses and loads the tokenizer of each of `models` (see the module docs). Downloads
    /// run on a blocking thread.
    pub async fn resolve(
        models: &[String],
        options: &RunOptions,
        simulated: bool,
        hub: &HubSettings,
    ) -> Result<ModelTokenizers, TokenizerSetupError> {
        let models = models.to_vec();
        let options = options.clone();
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || resolve_blocking(&models, &options, simulated, &hub))
            .await
            .unwrap_or_else(|e| {
                Err(TokenizerSetupError {
                    model: String::new(),
                    tokenizer: String::new(),
                    origin: "",
                    cause: format!("the tokenizer loader stopped: {e}"),
                })
            })
    }

    /// The tokenizer of `model` (the embedded one for a model that was not resolved).
    pub fn for_model(&self, model: &str) -> &ModelTokenizer {
        self.by_model.get(model).unwrap_or(&self.embedded)
    }
}

fn resolve_blocking(
    models: &[String],
    options: &RunOptions,
    simulated: bool,
    hub: &HubSettings,
) -> Result<ModelTokenizers, TokenizerSetupError> {
    let mut loaded: HashMap<String, Loaded> = HashMap::new();
    let embedded = embedded_loaded();
    loaded.insert(embedded_key(), embedded.clone());
    let mut by_model = HashMap::new();
    for model in models {
        if by_model.contains_key(model) {
            continue;
        }
        let entry = match choose(model, options, simulated) {
            Some(choice) => match load(&choice, hub, &mut loaded) {
                Ok(pair) => {
                    tracing::debug!(
                        model = %model,
                        tokenizer = %choice.value,
                        "tokenizer chosen ({})",
                        origin_name(choice.origin)
                    );
                    ModelTokenizer {
                        tokenizer: pair.0,
                        prompts: pair.1,
                        source: choice.value.clone(),
                        origin: choice.origin,
                    }
                }
                Err(cause) if choice.origin == TokenizerOrigin::KitFamily => {
                    tracing::warn!(
                        "model {model:?}: the kit's tokenizer for its family, {}, could not be \
                         loaded ({cause}); its prompts are sized with the embedded cl100k_base \
                         instead, so the server may count other lengths; map the model in \
                         options.tokenizers to a tokenizer.json or a reachable repository",
                        choice.value
                    );
                    embedded_entry(TokenizerOrigin::Fallback, embedded.clone())
                }
                Err(cause) => {
                    return Err(TokenizerSetupError {
                        model: model.clone(),
                        tokenizer: choice.value.clone(),
                        origin: origin_name(choice.origin),
                        cause,
                    });
                }
            },
            None => {
                tracing::warn!(
                    "model {model:?}: no tokenizer is mapped to it and its name is of no family \
                     the kit knows; its prompts are sized with the embedded cl100k_base, so the \
                     server may count other lengths; map it in options.tokenizers (or \
                     --tokenizer) to its tokenizer.json or Hugging Face repository"
                );
                embedded_entry(TokenizerOrigin::Fallback, embedded.clone())
            }
        };
        by_model.insert(model.clone(), entry);
    }
    Ok(ModelTokenizers {
        by_model,
        embedded: embedded_entry(TokenizerOrigin::Fallback, embedded),
    })
}

/// The tokenizer chosen for `model`, or `None` when only the fallback is left.
fn choose(model: &str, options: &RunOptions, simulated: bool) -> Option<Choice> {
    let named = |value: &str, origin| {
        // Validation rejected values that name nothing; such a value here is the embedded.
        let source = TokenizerSource::parse(value).unwrap_or(TokenizerSource::Embedded);
        Choice {
            source,
            value: value.to_string(),
            origin,
        }
    };
    if let Some(rule) = rule_for(&options.tokenizers, model) {
        return Some(named(&rule.tokenizer, TokenizerOrigin::Mapped));
    }
    if let Some(value) = &options.tokenizer {
        return Some(named(value, TokenizerOrigin::RunWide));
    }
    if simulated {
        return Some(Choice {
            source: TokenizerSource::Embedded,
            value: "embedded cl100k_base".into(),
            origin: TokenizerOrigin::Simulator,
        });
    }
    families::kit_tokenizer_repo(model).map(|repo| Choice {
        source: TokenizerSource::Hub {
            repo: repo.to_string(),
            revision: None,
        },
        value: repo.to_string(),
        origin: TokenizerOrigin::KitFamily,
    })
}

/// Loads `choice` once per distinct source; the error says why and how to fix it.
fn load(
    choice: &Choice,
    hub: &HubSettings,
    loaded: &mut HashMap<String, Loaded>,
) -> Result<Loaded, String> {
    let key = match &choice.source {
        TokenizerSource::Embedded => embedded_key(),
        other => other.describe(),
    };
    if let Some(pair) = loaded.get(&key) {
        return Ok(pair.clone());
    }
    let path = match &choice.source {
        TokenizerSource::Embedded => {
            let pair = embedded_loaded();
            loaded.insert(key, pair.clone());
            return Ok(pair);
        }
        TokenizerSource::File(path) => path.clone(),
        TokenizerSource::Hub { repo, revision } => {
            tokenizer_file(hub, repo, revision.as_deref()).map_err(|e| e.to_string())?
        }
    };
    let tokenizer = Arc::new(Tokenizer::from_file(&path).map_err(|e| e.to_string())?);
    let pair = (
        Arc::clone(&tokenizer),
        Arc::new(PromptBuilder::new(tokenizer)),
    );
    loaded.insert(key, pair.clone());
    Ok(pair)
}

fn embedded_key() -> String {
    TokenizerSource::Embedded.describe()
}

fn embedded_loaded() -> Loaded {
    let tokenizer = Arc::new(Tokenizer::embedded());
    (
        Arc::clone(&tokenizer),
        Arc::new(PromptBuilder::new(tokenizer)),
    )
}

fn embedded_entry(origin: TokenizerOrigin, (tokenizer, prompts): Loaded) -> ModelTokenizer {
    ModelTokenizer {
        tokenizer,
        prompts,
        source: embedded_key(),
        origin,
    }
}

fn origin_name(origin: TokenizerOrigin) -> &'static str {
    match origin {
        TokenizerOrigin::Mapped => "options.tokenizers",
        TokenizerOrigin::RunWide => "options.tokenizer",
        TokenizerOrigin::Simulator => "the simulator's tokenizer",
        TokenizerOrigin::KitFamily => "the kit's tokenizer for the model's family",
        TokenizerOrigin::Fallback => "fallback",
    }
}
