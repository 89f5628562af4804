//! Measuring the prompt tokens a server's chat template adds to a user message, for the
//! tokenizer check ([`crate::statistics::summary::TokenizerCheck`]): one request with a known short prompt
//! and `max_tokens` 1, whose server prompt count minus the client's count of the text (with the
//! special tokens its tokenizer adds, a BOS for Llama 3) is the template's overhead. It is sent after a row's requests (never before: it would warm the model
//! and hide the row's switching time), once per model and run, and only when the row's server
//! reported prompt counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::client::{EndpointClient, RequestSpec};
use coebench_support::tokenizer::{TokenCounter, Tokenizer};

/// The probe's prompt: short, plain words every tokenizer splits the same way.
const PROBE_TEXT: &str = "Say hello.";

/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Overheads measured so far in a run, by model (`None`: the probe got no prompt count).
#[derive(Debug, Default)]
pub struct TemplateOverheads(Mutex<HashMap<String, Option<i64>>>);

impl TemplateOverheads {
    /// `model`'s template overhead, probing the endpoint on the first call for that model.
    pub async fn of(
        &self,
        client: &EndpointClient,
        tokenizer: &Tokenizer,
        model: &str,
    ) -> Option<i64> {
        if let Some(known) = self.lock().get(model) {
            return *known;
        }
        let measured = probe(client, tokenizer, model).await;
        self.lock().insert(model.to_string(), measured);
        measured
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<i64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn probe(client: &EndpointClient, tokenizer: &Tokenizer, model: &str) -> Option<i64> {
    let request = client
        .prepare(&RequestSpec {
            model,
            prompt: PROBE_TEXT,
            image: None,
            max_tokens: 1,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: None,
        })
        .ok()?;
    let measured = client
        .send(&request, "coebench-template-probe", PROBE_TIMEOUT)
        .await;
    if let Some(error) = &measured.error {
        tracing::debug!(model, "template probe failed: {}", error.message);
        return None;
    }
    let server = i64::try_from(measured.server?.input_tokens?).ok()?;
    // The tokenizer's own special tokens (a BOS) count as prompt, as in every row's prompt
    // (`workload::prompt::text_tokens_for`), so the overhead is the template's rest.
    let client_count =
        i64::try_from(tokenizer.count_tokens(PROBE_TEXT) + tokenizer.special_tokens_added())
            .ok()?;
    Some(server - client_count)
}
