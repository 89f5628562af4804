//! Which tokenizer sizes each model's prompts: the plan's per-model rules
//! (`options.tokenizers`), what a tokenizer value names ([`TokenizerSource`]), and model-name
//! patterns. Loading and downloading tokenizers is the engine's job; this module only decides.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One entry of `options.tokenizers`: the models it applies to and their tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenizerRule {
    /// A model name, or a pattern where `*` stands for any characters and `?` for one (for
    /// example `Meta-Llama-3.3-*` or `*Qwen*`). An exact name wins over every pattern; among
    /// patterns the first that matches wins.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The tokenizer: a `tokenizer.json` path (ending in `.json`, or absolute, or starting with
    /// `./` or `../`; a path ending in `/` means the `tokenizer.json` in that folder), a Hugging
    /// Face repository name (`owner/name`, optionally `@revision`) whose `tokenizer.json` is
    /// downloaded once into the Hugging Face cache, or `embedded` for the built-in
    /// `cl100k_base`.
    #[schemars(length(min = 1))]
    pub tokenizer: String,
}

/// What a tokenizer value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// The embedded `cl100k_base` BPE.
    Embedded,
    /// A local `tokenizer.json`.
    File(PathBuf),
    /// A Hugging Face repository's `tokenizer.json`.
    Hub {
        /// `owner/name` (or a bare `name`).
        repo: String,
        /// A branch, tag or commit; `None` for `main`.
        revision: Option<String>,
    },
}

/// The value that names the embedded tokenizer.
pub const EMBEDDED: &str = "embedded";

impl TokenizerSource {
    /// What `value` names, or why it names nothing (the message quotes the value and says what
    /// is accepted).
    pub fn parse(value: &str) -> Result<TokenizerSource, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the tokenizer is empty".into());
        }
        if value == EMBEDDED || value == "cl100k_base" {
            return Ok(TokenizerSource::Embedded);
        }
        if is_local_path(value) {
            let path = if value.ends_with('/') {
                Path::new(value).join("tokenizer.json")
            } else {
                PathBuf::from(value)
            };
            return Ok(TokenizerSource::File(path));
        }
        let (repo, revision) = match value.split_once('@') {
            Some((repo, revision)) => (repo, Some(revision)),
            None => (value, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let well_formed = parts.len() <= 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
            && revision.is_none_or(|r| !r.is_empty() && !r.contains(char::is_whitespace));
        if !well_formed {
            return Err(format!(
                "{value:?} is neither a tokenizer.json path nor a Hugging Face repository name"
            ));
        }
        Ok(TokenizerSource::Hub {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// How the value reads in messages: the path, `owner/name[@revision]`, or `embedded`.
    pub fn describe(&self) -> String {
        match self {
            TokenizerSource::Embedded => "embedded cl100k_base".into(),
            TokenizerSource::File(path) => path.display().to_string(),
            TokenizerSource::Hub { repo, revision } => match revision {
                Some(r) => format!("{repo}@{r}"),
                None => repo.clone(),
            },
        }
    }
}

/// Whether a tokenizer value is a local path rather than a repository name.
fn is_local_path(value: &str) -> bool {
    value.ends_with(".json")
        || value.ends_with('/')
        || value.starts_with('/')
        || value.starts_with("./")
        || value.starts_with("../")
        || value.starts_with('~')
        || value.contains('\\')
}

/// `value` with a relative local path made relative to `base`; repository names and
/// `embedded` are returned unchanged.
pub fn resolve_tokenizer_path(value: &str, base: &Path) -> String {
    match TokenizerSource::parse(value) {
        Ok(TokenizerSource::File(path)) if path.is_relative() => {
            let joined = base.join(value.trim());
            joined.display().to_string()
        }
        _ => value.to_string(),
    }
}

/// Whether `model` matches `pattern`: `*` matches any characters (none included), `?` one
/// character, anything else itself (case-sensitive, as endpoints compare model names).
pub fn model_matches(pattern: &str, model: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let m: Vec<char> = model.chars().collect();
    // Iterative wildcard matching with one backtrack point (the last `*`).
    let (mut pi, mut mi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while mi < m.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == m[mi]) {
            pi += 1;
            mi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, mi));
            pi += 1;
        } else if let Some((sp, sm)) = star {
            pi = sp + 1;
            mi = sm + 1;
            star = Some((sp, sm + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `model` is a pattern rather than a plain name.
pub fn is_pattern(model: &str) -> bool {
    model.contains(['*', '?'])
}

/// The rule that applies to `model`: the one naming it exactly, else the first pattern that
/// matches it.
pub fn rule_for<'a>(rules: &'a [TokenizerRule], model: &str) -> Option<&'a TokenizerRule> {
    rules
        .iter()
        .find(|r| !is_pattern(&r.model) && r.model == model)
        .or_else(|| {
            rules
                .iter()
                .find(|r| is_pattern(&r.model) && model_matches(&r.model, model))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_paths_repositories_or_the_embedded_tokenizer() {
        let file = |p: &str| TokenizerSource::File(PathBuf::from(p));
        assert_eq!(
            TokenizerSource::parse("tok/tokenizer.json"),
            Ok(file("tok/tokenizer.json"))
        );
        assert_eq!(TokenizerSource::parse("/abs/tok"), Ok(file("/abs/tok")));
        assert_eq!(
            TokenizerSource::parse("./llama/"),
            Ok(file("./llama/tokenizer.json"))
        );
        assert_eq!(
            TokenizerSource::parse("unsloth/Llama-3.2-1B-Instruct"),
            Ok(TokenizerSource::Hub {
                repo: "unsloth/Llama-3.2-1B-Instruct".into(),
                revision: None
            })
        );
        assert_eq!(
            TokenizerSource::parse("gpt2@v1.0").unwrap().describe(),
            "gpt2@v1.0"
        );
        assert_eq!(
            TokenizerSource::parse("embedded"),
            Ok(TokenizerSource::Embedded)
        );
        for bad in ["", "a/b/c", "owner/na me", "owner/.hidden", "x@"] {
            assert!(TokenizerSource::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_local_relative_paths_are_resolved() {
        let base = Path::new("plans");
        assert_eq!(
            resolve_tokenizer_path("t/tokenizer.json", base),
            "plans/t/tokenizer.json"
        );
        assert_eq!(resolve_tokenizer_path("/a.json", base), "/a.json");
        assert_eq!(resolve_tokenizer_path("owner/repo", base), "owner/repo");
        assert_eq!(resolve_tokenizer_path("embedded", base), "embedded");
    }

    #[test]
    fn patterns_match_like_shell_globs() {
        assert!(model_matches(
            "Meta-Llama-3.3-*",
            "Meta-Llama-3.3-70B-Instruct"
        ));
        assert!(model_matches("*Qwen*", "Qwen2.5-72B"));
        assert!(model_matches("a?c", "abc"));
        assert!(model_matches("*", ""));
        assert!(model_matches("a*b*c", "a-b-x-c"));
        assert!(!model_matches("a*b*c", "a-b-x-d"));
        assert!(!model_matches("Llama*", "Meta-Llama"));
        assert!(!model_matches("abc", "abcd"));
    }

    #[test]
    fn an_exact_name_wins_over_patterns_and_the_first_pattern_wins() {
        let rule = |model: &str, tokenizer: &str| TokenizerRule {
            model: model.into(),
            tokenizer: tokenizer.into(),
        };
        let rules = [
            rule("*", "catch-all"),
            rule("Llama*", "llama"),
            rule("Llama-3", "exact"),
        ];
        assert_eq!(rule_for(&rules, "Llama-3").unwrap().tokenizer, "exact");
        assert_eq!(rule_for(&rules, "Llama-4").unwrap().tokenizer, "catch-all");
        assert!(rule_for(&rules[1..], "Qwen").is_none());
    }
}
