//! Reading request bodies of the three wire formats (chat completions, SambaStudio generic v1
//! and v2) into one [`ParsedRequest`], with a 400 [`ApiError`] naming the field for anything
//! malformed. Model lookup, token counting and scheduling happen elsewhere.

use serde_json::{Map, Value};

use super::image;
use super::wire::ApiError;

/// A request body reduced to what the simulator needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedRequest {
    /// Model as the client named it (`model`, or `select_expert`); `None` for a generic request
    /// without `select_expert`.
    pub model: Option<String>,
    /// All prompt text, messages joined with newlines.
    pub prompt: String,
    /// Width and height of each image.
    pub images: Vec<(u32, u32)>,
    /// `max_tokens` (`max_completion_tokens`, `max_tokens_to_generate`), if sent.
    pub max_tokens: Option<u32>,
    /// `ignore_eos`.
    pub ignore_eos: bool,
    /// Whether to stream (always for the generic stream endpoints).
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The v2 item id to echo (`item1` when absent).
    pub item_id: String,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request_body", message)
}

fn parse_json(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(bad(format!(
            "the request body must be a JSON object, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_bool(field: &str, v: &Value) -> Result<bool, ApiError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(bad(format!("`{field}` must be true or false, got {other}"))),
    }
}

fn as_max_tokens(field: &str, v: &Value) -> Result<Option<u32>, ApiError> {
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 1 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
        _ => Err(bad(format!(
            "`{field}` must be a positive integer, got {v}"
        ))),
    }
}

/// Reads a chat-completions body.
pub(crate) fn parse_chat(body: &[u8]) -> Result<ParsedRequest, ApiError> {
    let map = parse_json(body)?;
    let model = match map.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(bad(format!(
                "`model` must be a non-empty string, got {other}"
            )));
        }
        None => return Err(bad("`model` is missing; name the model to use")),
    };
    let messages = match map.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => {
            return Err(bad(
                "`messages` must be a non-empty array of {\"role\", \"content\"} objects",
            ));
        }
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message.get("content") {
            Some(Value::String(s)) => texts.push(s.as_str()),
            Some(Value::Null) | None => {}
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => match part.get("text") {
                            Some(Value::String(s)) => texts.push(s.as_str()),
                            _ => {
                                return Err(bad(format!(
                                    "messages[{i}].content[{j}].text must be a string"
                                )));
                            }
                        },
                        Some("image_url") => {
                            let url = match part.get("image_url") {
                                Some(Value::String(s)) => s.as_str(),
                                Some(obj) => obj.get("url").and_then(Value::as_str).unwrap_or(""),
                                None => "",
                            };
                            let dims = image::data_url_dimensions(url).map_err(|e| {
                                ApiError::bad_request(
                                    "invalid_image",
                                    format!("messages[{i}].content[{j}]: {e}"),
                                )
                            })?;
                            images.push(dims);
                        }
                        other => {
                            return Err(bad(format!(
                                "messages[{i}].content[{j}].type must be \"text\" or \"image_url\", got {}",
                                other.map_or("nothing".to_string(), |t| format!("{t:?}"))
                            )));
                        }
                    }
                }
            }
            Some(other) => {
                return Err(bad(format!(
                    "messages[{i}].content must be a string or an array of parts, got {}",
                    kind_of(other)
                )));
            }
        }
    }
    let max_tokens = match map.get("max_tokens") {
        Some(v) if !v.is_null() => as_max_tokens("max_tokens", v)?,
        _ => match map.get("max_completion_tokens") {
            Some(v) => as_max_tokens("max_completion_tokens", v)?,
            None => None,
        },
    };
    let ignore_eos = map
        .get("ignore_eos")
        .map(|v| as_bool("ignore_eos", v))
        .transpose()?
        .unwrap_or(false);
    let stream = map
        .get("stream")
        .map(|v| as_bool("stream", v))
        .transpose()?
        .unwrap_or(false);
    let include_usage = match map.get("stream_options") {
        Some(Value::Object(o)) => o
            .get("include_usage")
            .map(|v| as_bool("stream_options.include_usage", v))
            .transpose()?
            .unwrap_or(false),
        Some(Value::Null) | None => false,
        Some(other) => {
            return Err(bad(format!(
                "`stream_options` must be an object, got {}",
                kind_of(other)
            )));
        }
    };
    Ok(ParsedRequest {
        model: Some(model),
        prompt: texts.join("\n"),
        images,
        max_tokens,
        ignore_eos,
        stream,
        include_usage,
        item_id: "item1".to_string(),
    })
}

/// A v1 parameter is `{"type": ..., "value": "<text>"}`; a v2 one is the raw value.
fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let v = params.get(name)?;
    match v {
        Value::Object(o) if o.contains_key("value") => o.get("value"),
        other => Some(other),
    }
}

/// Reads a SambaStudio generic stream body, v1 (`v2 == false`) or v2.
pub(crate) fn parse_generic(body: &[u8], v2: bool) -> Result<ParsedRequest, ApiError> {
    let map = parse_json(body)?;
    let mut item_id = "item1".to_string();
    let prompt = if v2 {
        let item = map
            .get("items")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .ok_or_else(|| {
                bad("`items` must be a non-empty array of {\"id\", \"value\"} objects")
            })?;
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            item_id = id.to_string();
        }
        match item.get("value") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad("items[0].value must be the prompt string")),
        }
    } else {
        match (map.get("instance"), map.get("instances")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::Array(a))) if a.first().is_some_and(Value::is_string) => {
                a[0].as_str().unwrap_or_default().to_string()
            }
            _ => return Err(bad("`instance` must be the prompt string")),
        }
    };
    let empty = Map::new();
    let params = match map.get("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => &empty,
        Some(other) => {
            return Err(bad(format!(
                "`params` must be an object, got {}",
                kind_of(other)
            )));
        }
    };
    let model = match param(params, "select_expert") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(bad(format!(
                "`params.select_expert` must be a model name, got {other}"
            )));
        }
    };
    let max_tokens = match param(params, "max_tokens_to_generate") {
        Some(v) => as_max_tokens("params.max_tokens_to_generate", v)?,
        None => None,
    };
    let ignore_eos = match param(params, "ignore_eos") {
        Some(v) => as_bool("params.ignore_eos", v)?,
        None => false,
    };
    Ok(ParsedRequest {
        model,
        prompt,
        images: Vec::new(),
        max_tokens,
        ignore_eos,
        stream: true,
        include_usage: true,
        item_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{encode_base64, jpeg};

    #[test]
    fn chat_bodies_with_text_and_image_parts_parse() {
        let url = format!("data:image/png;base64,{}", encode_base64(&jpeg(30, 20)));
        let body = serde_json::json!({
            "model": "m", "max_tokens": 7, "ignore_eos": true, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": url}}
                ]}
            ]
        });
        let p = parse_chat(body.to_string().as_bytes()).unwrap();
        assert_eq!(p.model.as_deref(), Some("m"));
        assert_eq!(p.prompt, "be brief\ndescribe");
        assert_eq!(p.images, vec![(30, 20)]);
        assert_eq!(p.max_tokens, Some(7));
        assert!(p.ignore_eos && p.stream && p.include_usage);
    }

    #[test]
    fn bad_chat_bodies_name_the_field() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"messages":[{"content":"x"}]}"#, "`model` is missing"),
            (r#"{"model":"m"}"#, "`messages`"),
            (
                r#"{"model":"m","messages":[{"content":"x"}],"max_tokens":0}"#,
                "`max_tokens` must be a positive integer, got 0",
            ),
            (
                r#"{"model":"m","messages":[{"content":[{"type":"audio"}]}]}"#,
                "messages[0].content[0].type",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_chat(body.as_bytes()).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }

    #[test]
    fn generic_v1_params_are_typed_strings() {
        let body = r#"{"instance":"hello","params":{
            "max_tokens_to_generate":{"type":"int","value":"12"},
            "select_expert":{"type":"str","value":"expert-a"},
            "process_prompt":{"type":"bool","value":"False"}}}"#;
        let p = parse_generic(body.as_bytes(), false).unwrap();
        assert_eq!(p.model.as_deref(), Some("expert-a"));
        assert_eq!(p.max_tokens, Some(12));
        assert_eq!(p.prompt, "hello");
        assert!(p.stream);
    }

    #[test]
    fn generic_v2_items_and_raw_params() {
        let body = r#"{"items":[{"id":"x7","value":"hi"}],
            "params":{"max_tokens_to_generate":5,"select_expert":"e","process_prompt":false}}"#;
        let p = parse_generic(body.as_bytes(), true).unwrap();
        assert_eq!(
            (p.item_id.as_str(), p.prompt.as_str(), p.max_tokens),
            ("x7", "hi", Some(5))
        );
        let err = parse_generic(br#"{"items":[]}"#, true).unwrap_err();
        assert!(err.message.contains("items"), "{}", err.message);
    }
}
