//! A repository's `tokenizer.json` from the Hugging Face Hub, downloaded once into the Hugging
//! Face cache (the layout `huggingface_hub` shares, so a cache filled by Python is reused) with
//! the `hf-hub` crate's blocking client, the way `huggingface_hub` reads its environment:
//! - `HF_ENDPOINT`: the hub or a mirror (default `https://huggingface.co`);
//! - `HF_TOKEN`: the token of gated or private repositories (else the token file that
//!   `huggingface-cli login` writes beside the cache);
//! - `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//!   `~/.cache/huggingface/hub`: the cache;
//! - `HF_HUB_OFFLINE=1`: never connect; only the cache is read.
//!
//! A file already in the cache is used without connecting. The token is sent only as the
//! request's `Authorization` header and never appears in messages.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// The file coebench reads from a repository.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Where and how tokenizers are fetched, read from the environment once per run.
#[derive(Clone)]
pub struct HubSettings {
    /// Base URL of the hub.
    pub endpoint: String,
    /// The cache folder (the `hub` folder of `HF_HOME`).
    pub cache_dir: PathBuf,
    /// Never connect; read only the cache.
    pub offline: bool,
    token: Option<String>,
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The default hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl HubSettings {
    /// The settings `env` describes (see the module docs).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> HubSettings {
        let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        // As huggingface_hub: HF_HUB_CACHE, else HF_HOME/hub, else
        // $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (the temporary
        // folder when there is no home).
        let cache_dir = if let Some(cache) = non_empty("HF_HUB_CACHE") {
            PathBuf::from(cache)
        } else if let Some(home) = non_empty("HF_HOME") {
            Path::new(&home).join("hub")
        } else if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
            Path::new(&xdg).join("huggingface").join("hub")
        } else {
            non_empty("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir)
                .join(".cache")
                .join("huggingface")
                .join("hub")
        };
        let offline = non_empty("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let token = non_empty("HF_TOKEN")
            .map(|t| t.trim().to_string())
            .or_else(|| Cache::new(cache_dir.clone()).token());
        HubSettings {
            endpoint: non_empty("HF_ENDPOINT")
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir,
            offline,
            token,
        }
    }

    /// Whether a token will be sent.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

/// Why a repository's tokenizer could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// Offline, and the cache does not hold the file.
    #[error(
        "HF_HUB_OFFLINE is set and {repo}'s tokenizer.json is not in the cache {cache}; \
         download it once online (or copy a Hugging Face cache there), or unset HF_HUB_OFFLINE"
    )]
    NotCached {
        /// The repository.
        repo: String,
        /// The cache folder.
        cache: String,
    },
    /// The hub refused: gated or private repository.
    #[error(
        "{endpoint} refused {repo}'s tokenizer.json (HTTP {status}): the repository is gated \
         or private; {fix}"
    )]
    Unauthorized {
        /// The repository.
        repo: String,
        /// The hub.
        endpoint: String,
        /// 401 or 403.
        status: u16,
        /// What to do, depending on whether a token was sent.
        fix: String,
    },
    /// No such repository, revision or file.
    #[error(
        "{endpoint} has no tokenizer.json in {repo} (HTTP 404); check the repository name \
         (owner/name) and revision, or map the model to a local tokenizer.json"
    )]
    NotFound {
        /// The repository.
        repo: String,
        /// The hub.
        endpoint: String,
    },
    /// Anything else: the hub could not be reached, answered oddly, or the cache could not be
    /// written.
    #[error(
        "cannot download {repo}'s tokenizer.json from {endpoint}: {cause}; check the network \
         (or set HF_ENDPOINT to a reachable mirror), or use a cached copy with HF_HUB_OFFLINE=1, \
         or map the model to a local tokenizer.json"
    )]
    Download {
        /// The repository.
        repo: String,
        /// The hub.
        endpoint: String,
        /// What failed.
        cause: String,
    },
}

/// The local path of `repo`'s `tokenizer.json` at `revision` (default `main`): from the cache
/// when it is there, else downloaded into it. Blocking: call it off the async runtime.
pub fn tokenizer_file(
    settings: &HubSettings,
    repo: &str,
    revision: Option<&str>,
) -> Result<PathBuf, HubError> {
    let repo_ref = match revision {
        Some(r) => Repo::with_revision(repo.to_string(), RepoType::Model, r.to_string()),
        None => Repo::new(repo.to_string(), RepoType::Model),
    };
    let shown = match revision {
        Some(r) => format!("{repo}@{r}"),
        None => repo.to_string(),
    };
    let cache = Cache::new(settings.cache_dir.clone());
    if let Some(path) = cache.repo(repo_ref.clone()).get(TOKENIZER_FILE) {
        return Ok(path);
    }
    if settings.offline {
        return Err(HubError::NotCached {
            repo: shown,
            cache: settings.cache_dir.display().to_string(),
        });
    }
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .with_user_agent("coebench", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| download_error(settings, &shown, &e))?;
    api.repo(repo_ref)
        .get(TOKENIZER_FILE)
        .map_err(|e| download_error(settings, &shown, &e))
}

/// The error of a failed download, by HTTP status when there was one.
fn download_error(settings: &HubSettings, repo: &str, error: &ApiError) -> HubError {
    let endpoint = settings.endpoint.clone();
    let repo = repo.to_string();
    match status_of(error) {
        Some(status @ (401 | 403)) => HubError::Unauthorized {
            repo,
            endpoint,
            status,
            fix: if settings.has_token() {
                "the token in HF_TOKEN has no access to it: accept the model's license on its \
                 page with the token's account, or use a token that has access"
                    .into()
            } else {
                "set HF_TOKEN to a Hugging Face access token that has access to it (accept the \
                 model's license on its page first)"
                    .into()
            },
        },
        Some(404) => HubError::NotFound { repo, endpoint },
        _ => HubError::Download {
            repo,
            endpoint,
            cause: error.to_string(),
        },
    }
}

/// The HTTP status of a failed request, through the crate's retry wrapper.
fn status_of(error: &ApiError) -> Option<u16> {
    match error {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::Status(status, _) => Some(*status),
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => status_of(inner),
        _ => None,
    }
}
