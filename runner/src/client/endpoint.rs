//! What each API flavour puts on the wire: URL rules, headers and request bodies
//! (kit-reference 4.1-4.2). Pure functions of the endpoint and the request; no I/O.

use http::Uri;
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use serde::Serialize;

use super::{ClientError, ClientOptions, RequestSpec};
use crate::credentials::ResolvedEndpoint;
use coebench_plan::{ApiKind, Route};

/// Where and how an endpoint is called.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL every benchmark request is posted to.
    pub uri: Uri,
    /// The URL that lists models, for APIs that have one.
    pub models_uri: Option<Uri>,
    /// The route, which fixes the framing of requests and responses.
    pub route: Route,
    /// Whether chat bodies carry `"ignore_eos": true` unless the request says otherwise
    /// (never on SambaStudio's OpenAI-compatible URLs).
    pub ignore_eos: bool,
    /// Headers of every request (the request id is added per request).
    pub headers: HeaderMap,
}

/// Applies the flavour's URL rules and builds its headers, or says what is wrong with the URL.
pub(crate) fn resolve(
    endpoint: &ResolvedEndpoint,
    options: &ClientOptions,
) -> Result<Target, ClientError> {
    let redact = |s: &str| match &endpoint.api_key {
        Some(key) => key.redact(s),
        None => crate::credentials::redaction::redact_url_credentials(s),
    };
    let url = endpoint.url.trim();
    let parsed = parse_url(url, endpoint.api, &redact)?;
    let (uri, route) = match endpoint.api {
        ApiKind::Sncloud | ApiKind::Openai => {
            let uri = if url.contains("chat/completions") {
                parsed.clone()
            } else {
                with_path_suffix(&parsed, "chat/completions", &redact)?
            };
            (uri, Route::Chat)
        }
        ApiKind::Sambastudio => sambastudio_url(url, &parsed, &redact)?,
        ApiKind::Simulator => return Err(ClientError::Simulator),
    };
    let models_uri = match route {
        Route::Chat => Some(models_url(&uri, &redact)?),
        Route::GenericV1 | Route::GenericV2 => None,
    };
    let ignore_eos = options.ignore_eos && endpoint.api != ApiKind::Sambastudio;
    let headers = headers(endpoint, route)?;
    Ok(Target {
        uri,
        models_uri,
        route,
        ignore_eos,
        headers,
    })
}

fn parse_url(url: &str, api: ApiKind, redact: &dyn Fn(&str) -> String) -> Result<Uri, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        api: api.as_str(),
        url: redact(url),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("the scheme must be http:// or https://")),
        None => {
            return Err(invalid(
                "it has no scheme; start it with https:// or http://",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(uri)
}

/// SambaStudio's rules: `chat/completions` is OpenAI-compatible as is (never with
/// `ignore_eos`), a URL containing `stream` is used as is, and otherwise every `generic`
/// becomes `generic/stream`.
fn sambastudio_url(
    url: &str,
    parsed: &Uri,
    redact: &dyn Fn(&str) -> String,
) -> Result<(Uri, Route), ClientError> {
    let generic = if url.contains("/api/v2") {
        Route::GenericV2
    } else {
        Route::GenericV1
    };
    if url.contains("chat/completions") {
        Ok((parsed.clone(), Route::Chat))
    } else if url.contains("stream") {
        Ok((parsed.clone(), generic))
    } else if url.contains("generic") {
        let rewritten = url.replace("generic", "generic/stream");
        let uri = parse_url(&rewritten, ApiKind::Sambastudio, redact)?;
        Ok((uri, generic))
    } else {
        Err(ClientError::UnsupportedSambaStudioUrl { url: redact(url) })
    }
}

/// `uri` with `/<suffix>` appended to its path, keeping its query.
fn with_path_suffix(
    uri: &Uri,
    suffix: &str,
    redact: &dyn Fn(&str) -> String,
) -> Result<Uri, ClientError> {
    let path = uri.path().trim_end_matches('/');
    rebuild(uri, &format!("{path}/{suffix}"), redact)
}

/// The `/models` URL next to a chat completions URL.
fn models_url(chat: &Uri, redact: &dyn Fn(&str) -> String) -> Result<Uri, ClientError> {
    let path = chat.path();
    let base = path
        .find("chat/completions")
        .map_or(path, |i| &path[..i])
        .trim_end_matches('/');
    rebuild(chat, &format!("{base}/models"), redact)
}

fn rebuild(uri: &Uri, path: &str, redact: &dyn Fn(&str) -> String) -> Result<Uri, ClientError> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| ClientError::InvalidUrl {
                api: "endpoint",
                url: redact(&uri.to_string()),
                reason: format!("cannot append {path}: {e}"),
            })?,
    );
    Uri::from_parts(parts).map_err(|e| ClientError::InvalidUrl {
        api: "endpoint",
        url: redact(&uri.to_string()),
        reason: e.to_string(),
    })
}

fn headers(endpoint: &ResolvedEndpoint, route: Route) -> Result<HeaderMap, ClientError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let key = endpoint.api_key.as_ref().map(|k| k.expose());
    let secret = |value: String| -> Result<HeaderValue, ClientError> {
        let mut value = HeaderValue::from_str(&value).map_err(|_| ClientError::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(value)
    };
    match route {
        Route::Chat => {
            headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("coebench/", env!("CARGO_PKG_VERSION"))),
            );
            if let Some(key) = key {
                headers.insert(AUTHORIZATION, secret(format!("Bearer {key}"))?);
            }
        }
        Route::GenericV1 | Route::GenericV2 => {
            // The kit sent only `key` (plus the JSON content type its HTTP library adds).
            if let Some(key) = key {
                headers.insert(HeaderName::from_static("key"), secret(key.to_string())?);
            }
        }
    }
    Ok(headers)
}

/// The request body for `spec`, serialised once.
pub(crate) fn body(
    target: &Target,
    spec: &RequestSpec<'_>,
    url: &str,
) -> Result<Vec<u8>, ClientError> {
    let json = match target.route {
        Route::Chat => {
            let content = match spec.image {
                None => Content::Text(spec.prompt),
                Some(image) => Content::Parts([
                    Part::Text { text: spec.prompt },
                    Part::ImageUrl {
                        image_url: ImageUrl {
                            url: &image.data_url,
                        },
                    },
                ]),
            };
            serde_json::to_vec(&ChatBody {
                messages: [Message {
                    role: "user",
                    content,
                }],
                model: spec.model,
                max_tokens: spec.max_tokens,
                ignore_eos: spec.ignore_eos.unwrap_or(target.ignore_eos).then_some(true),
                min_tokens: spec.min_tokens,
                stream: true,
                stream_options: StreamOptions {
                    include_usage: true,
                },
                sampling: spec.sampling_params,
            })
        }
        Route::GenericV1 | Route::GenericV2 => {
            if spec.image.is_some() {
                return Err(ClientError::ImageNotSupported {
                    url: url.to_string(),
                });
            }
            let params = generic_params(spec);
            let sampling = spec.sampling_params.into_iter().flatten();
            if target.route == Route::GenericV2 {
                let raw: serde_json::Map<String, serde_json::Value> = params
                    .into_iter()
                    .map(|(name, param)| (name.to_string(), param.raw()))
                    .chain(sampling.map(|(k, v)| (k.clone(), v.clone())))
                    .collect();
                serde_json::to_vec(&serde_json::json!({
                    "items": [{"id": "item1", "value": spec.prompt}],
                    "params": raw,
                }))
            } else {
                let typed: serde_json::Map<String, serde_json::Value> = params
                    .into_iter()
                    .map(|(name, param)| (name.to_string(), param.typed()))
                    .chain(sampling.map(|(k, v)| (k.clone(), typed_value(v))))
                    .collect();
                serde_json::to_vec(&serde_json::json!({
                    "instance": spec.prompt,
                    "params": typed,
                }))
            }
        }
    };
    json.map_err(|e| ClientError::Body(e.to_string()))
}

/// A generic API parameter.
enum Param<'a> {
    Int(u64),
    Bool(bool),
    Str(&'a str),
}

impl Param<'_> {
    /// The v2 form: the plain JSON value.
    fn raw(&self) -> serde_json::Value {
        match self {
            Param::Int(v) => (*v).into(),
            Param::Bool(v) => (*v).into(),
            Param::Str(v) => (*v).into(),
        }
    }

    /// The v1 form: `{"type": <Python type name>, "value": <Python str() of the value>}`.
    fn typed(&self) -> serde_json::Value {
        let (kind, value) = match self {
            Param::Int(v) => ("int", v.to_string()),
            Param::Bool(true) => ("bool", "True".to_string()),
            Param::Bool(false) => ("bool", "False".to_string()),
            Param::Str(v) => ("str", (*v).to_string()),
        };
        serde_json::json!({"type": kind, "value": value})
    }
}

/// A sampling parameter in the v1 typed form: `{"type": "float", "value": "0.7"}` (Python's
/// type names and `str()`); lists and objects as their JSON text with type `str`.
fn typed_value(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let (kind, text) = match value {
        Value::Bool(true) => ("bool", "True".to_string()),
        Value::Bool(false) => ("bool", "False".to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => ("int", n.to_string()),
        Value::Number(n) => ("float", n.to_string()),
        Value::String(s) => ("str", s.clone()),
        other => ("str", other.to_string()),
    };
    serde_json::json!({"type": kind, "value": text})
}

/// `max_tokens_to_generate`, plus expert selection for `Bundle/<expert>` models.
fn generic_params<'a>(spec: &RequestSpec<'a>) -> Vec<(&'static str, Param<'a>)> {
    let mut params = vec![("max_tokens_to_generate", Param::Int(spec.max_tokens.into()))];
    if spec.model.contains("Bundle") {
        let expert = spec.model.rsplit('/').next().unwrap_or(spec.model);
        params.push(("select_expert", Param::Str(expert)));
        params.push(("process_prompt", Param::Bool(false)));
        params.push(("top_k", Param::Int(1)));
    }
    params
}

#[derive(Serialize)]
struct ChatBody<'a> {
    messages: [Message<'a>; 1],
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_eos: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tokens: Option<u32>,
    stream: bool,
    stream_options: StreamOptions,
    /// The plan's sampling parameters, at the top level of the body as the kit sends them.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    sampling: Option<&'a coebench_plan::SamplingParams>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Parts([Part<'a>; 2]),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    url: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::ApiKey;

    fn target(api: ApiKind, url: &str) -> Target {
        resolve(
            &ResolvedEndpoint {
                api,
                url: url.to_string(),
                api_key: Some(ApiKey::new("k")),
                ca_certificate: None,
            },
            &ClientOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn chat_urls_gain_chat_completions_and_keep_their_query() {
        let t = target(ApiKind::Sncloud, "https://api.example.com/v1/");
        assert_eq!(t.uri, "https://api.example.com/v1/chat/completions");
        assert_eq!(t.models_uri.unwrap(), "https://api.example.com/v1/models");
        assert_eq!((t.route, t.ignore_eos), (Route::Chat, true));
        let t = target(ApiKind::Openai, "http://h:8000/v1?api-version=2");
        assert_eq!(t.uri, "http://h:8000/v1/chat/completions?api-version=2");
        assert_eq!(
            t.models_uri.unwrap(),
            "http://h:8000/v1/models?api-version=2"
        );
        let t = target(ApiKind::Openai, "http://h/openai/v1/chat/completions");
        assert_eq!(t.uri, "http://h/openai/v1/chat/completions");
        assert_eq!(t.models_uri.unwrap(), "http://h/openai/v1/models");
    }

    #[test]
    fn sambastudio_rules() {
        let t = target(ApiKind::Sambastudio, "https://h/api/predict/generic/p/e");
        assert_eq!(t.uri, "https://h/api/predict/generic/stream/p/e");
        assert_eq!(t.route, Route::GenericV1);
        assert!(t.models_uri.is_none());
        assert_eq!(t.headers.get("key").unwrap(), "k");
        assert!(t.headers.get("key").unwrap().is_sensitive());
        let t = target(ApiKind::Sambastudio, "https://h/api/v2/predict/generic/p/e");
        assert_eq!(t.uri, "https://h/api/v2/predict/generic/stream/p/e");
        assert_eq!(t.route, Route::GenericV2);
        let t = target(
            ApiKind::Sambastudio,
            "https://h/api/v2/predict/generic/stream/p/e",
        );
        assert_eq!(t.uri, "https://h/api/v2/predict/generic/stream/p/e");
        let t = target(ApiKind::Sambastudio, "https://h/v1/p/chat/completions");
        assert_eq!((t.route, t.ignore_eos), (Route::Chat, false));
    }

    #[test]
    fn keys_that_cannot_be_headers_are_rejected() {
        let err = resolve(
            &ResolvedEndpoint {
                api: ApiKind::Sncloud,
                url: "https://h/v1".into(),
                api_key: Some(ApiKey::new("bad\nkey")),
                ca_certificate: None,
            },
            &ClientOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err, ClientError::InvalidApiKey);
        assert!(!err.to_string().contains("bad"));
    }
}
