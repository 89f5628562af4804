//! Endpoint credentials: the one place that reads API keys and base URLs from the environment.
//!
//! Keys come only from environment variables (a `.env` file is loaded into the environment
//! first by the binary). An [`ApiKey`] never prints itself, and [`ApiKey::redact`] removes it
//! (and its fragments, see [`redaction`]) from any text that is about to be logged or
//! written.

use std::fmt;
use std::path::PathBuf;

use coebench_plan::{ApiKind, EndpointSpec};

use self::redaction::{MIN_SECRET_LEN, Redactor};

pub mod redaction;

/// Default SambaNova Cloud API base when `SAMBANOVA_API_BASE` is unset.
pub const DEFAULT_SAMBANOVA_API_BASE: &str = "https://api.sambanova.ai/v1";

/// An API key. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for building request headers only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with the key, its fragments and escaped forms, and URL credentials replaced by
    /// `***` (see [`Redactor`]). Redact before cutting text short.
    pub fn redact(&self, text: &str) -> String {
        self.redactor().redact(text)
    }

    /// The redactor of this key.
    pub fn redactor(&self) -> Redactor {
        Redactor::for_key(&self.0)
    }

    /// Whether the key is long enough to be treated as a secret (at least
    /// [`MIN_SECRET_LEN`] characters); shorter keys are not redacted from text.
    pub fn is_secret(&self) -> bool {
        self.0.chars().count() >= MIN_SECRET_LEN
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An endpoint with its URL and key resolved, ready for a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedEndpoint {
    /// The API flavour; never [`ApiKind::Simulator`] (a simulator resolves to the API it serves).
    pub api: ApiKind,
    /// `sncloud`/`openai`: the API base (`.../v1`) or a full `.../chat/completions` URL;
    /// `sambastudio`: the endpoint URL as configured.
    pub url: String,
    /// The API key, when the endpoint needs one.
    pub api_key: Option<ApiKey>,
    /// A PEM file of certificates to trust besides the public roots (the plan's
    /// `endpoint.caCertificate`, else `SSL_CERT_FILE`).
    pub ca_certificate: Option<PathBuf>,
}

/// A credential that is missing or unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CredentialError {
    /// A required environment variable is unset or empty.
    #[error(
        "{api} endpoint: environment variable {var} is not set; set it (or put `{var}=...` in a .env file){hint}"
    )]
    MissingVariable {
        /// The endpoint's API.
        api: &'static str,
        /// The variable to set.
        var: String,
        /// Extra advice, possibly empty.
        hint: &'static str,
    },
    /// A simulator endpoint has no credentials: the engine starts it in-process.
    #[error("a simulator endpoint is started in-process and has no URL or key to resolve")]
    Simulator,
}

/// Resolves an endpoint's URL and key from `spec` and the environment, read through `env`.
///
/// `env` returns a variable's value, or `None` when unset. Empty values count as unset.
/// A simulator endpoint cannot be resolved here: the engine starts it and resolves its address.
pub fn resolve_endpoint(
    spec: &EndpointSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedEndpoint, CredentialError> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let api = spec.api;
    let ca_certificate = spec
        .ca_certificate
        .clone()
        .or_else(|| get("SSL_CERT_FILE"))
        .map(PathBuf::from);
    let required = |var: &str, hint: &'static str| -> Result<String, CredentialError> {
        get(var).ok_or_else(|| CredentialError::MissingVariable {
            api: api.as_str(),
            var: var.to_string(),
            hint,
        })
    };
    match api {
        ApiKind::Sncloud => {
            let key_var = spec.api_key_env.as_deref().unwrap_or("SAMBANOVA_API_KEY");
            let key = required(key_var, "; get a key at https://cloud.sambanova.ai")?;
            let url = spec
                .url
                .clone()
                .or_else(|| get("SAMBANOVA_API_BASE"))
                .or_else(|| get("SAMBANOVA_URL"))
                .unwrap_or_else(|| DEFAULT_SAMBANOVA_API_BASE.to_string());
            Ok(ResolvedEndpoint {
                api,
                url,
                api_key: Some(ApiKey::new(key)),
                ca_certificate,
            })
        }
        ApiKind::Sambastudio => {
            let url = match &spec.url {
                Some(url) => url.clone(),
                None => required(
                    "SAMBASTUDIO_URL",
                    " to your endpoint URL, e.g. https://<host>/api/v2/predict/generic/<project>/<endpoint>",
                )?,
            };
            let key_var = spec.api_key_env.as_deref().unwrap_or("SAMBASTUDIO_API_KEY");
            let key = required(key_var, "")?;
            Ok(ResolvedEndpoint {
                api,
                url,
                api_key: Some(ApiKey::new(key)),
                ca_certificate,
            })
        }
        ApiKind::Openai => {
            let url = match &spec.url {
                Some(url) => url.clone(),
                None => get("OPENAI_BASE_URL")
                    .or_else(|| get("OPENAI_API_BASE"))
                    .ok_or_else(|| CredentialError::MissingVariable {
                        api: api.as_str(),
                        var: "OPENAI_BASE_URL".to_string(),
                        hint: " to the server's API base, e.g. http://localhost:8000/v1",
                    })?,
            };
            // Many self-hosted servers need no key; a named variable must exist, though.
            let api_key = match &spec.api_key_env {
                Some(var) => Some(ApiKey::new(required(var, "")?)),
                None => get("OPENAI_API_KEY").map(ApiKey::new),
            };
            Ok(ResolvedEndpoint {
                api,
                url,
                api_key,
                ca_certificate,
            })
        }
        ApiKind::Simulator => Err(CredentialError::Simulator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn spec(api: ApiKind) -> EndpointSpec {
        EndpointSpec {
            api,
            url: None,
            api_key_env: None,
            simulator: None,
            ca_certificate: None,
        }
    }

    #[test]
    fn sncloud_needs_a_key_and_defaults_its_base() {
        let err = resolve_endpoint(&spec(ApiKind::Sncloud), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("SAMBANOVA_API_KEY"), "{err}");
        let ok = resolve_endpoint(
            &spec(ApiKind::Sncloud),
            &env_of(&[("SAMBANOVA_API_KEY", "sk-1")]),
        )
        .unwrap();
        assert_eq!(ok.url, DEFAULT_SAMBANOVA_API_BASE);
        assert_eq!(ok.api_key.unwrap().expose(), "sk-1");
    }

    #[test]
    fn sambastudio_names_the_missing_url_then_the_missing_key() {
        let err = resolve_endpoint(&spec(ApiKind::Sambastudio), &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("SAMBASTUDIO_URL"), "{err}");
        let err = resolve_endpoint(
            &spec(ApiKind::Sambastudio),
            &env_of(&[("SAMBASTUDIO_URL", "https://h/api/predict/generic/p/e")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("SAMBASTUDIO_API_KEY"), "{err}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let err = resolve_endpoint(
            &spec(ApiKind::Sncloud),
            &env_of(&[("SAMBANOVA_API_KEY", "  ")]),
        )
        .unwrap_err();
        assert!(matches!(err, CredentialError::MissingVariable { .. }));
    }

    #[test]
    fn openai_key_is_optional_unless_named() {
        let ok = resolve_endpoint(
            &spec(ApiKind::Openai),
            &env_of(&[("OPENAI_BASE_URL", "http://localhost:8000/v1")]),
        )
        .unwrap();
        assert!(ok.api_key.is_none());
        let mut named = spec(ApiKind::Openai);
        named.api_key_env = Some("MY_KEY".into());
        named.url = Some("http://x/v1".into());
        let err = resolve_endpoint(&named, &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("MY_KEY"), "{err}");
    }

    #[test]
    fn keys_never_print_and_are_redacted() {
        let key = ApiKey::new("secret-123");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
        assert_eq!(key.redact("401 for key secret-123!"), "401 for key ***!");
    }
}
