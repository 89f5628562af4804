//! Prompt sizing with a real Llama 3 tokenizer (Llama 3.2's `tokenizer.json`, which adds the
//! `<|begin_of_text|>` BOS to every text): a row's prompt, as the model's tokenizer encodes it
//! and a server counts it, is exactly `inputTokens` long, and it costs the server the same
//! prompt tokens as the kit's prompt for the same row (the kit cuts its text to
//! `input_tokens - 1` tokens and counts the BOS on top).

use std::sync::Arc;
use std::time::Duration;

use coebench_plan::ApiKind;
use coebench_runner::client::{ClientOptions, EndpointClient, RequestSpec};
use coebench_runner::credentials::{ApiKey, ResolvedEndpoint};
use coebench_runner::workload::prompt::{DEFAULT, PromptBuilder, request_tag};
use coebench_support::tokenizer::Tokenizer;
use coebench_test_support::engine_support::*;
use coebench_test_support::llama3_tokenizer;

/// The kit's prompt of `n` tokens (kit-reference 2.2): the template repeated, tokenized
/// without special tokens, cut to `n - 1` tokens and turned back into text.
fn kit_prompt(hf: &tokenizers::Tokenizer, n: usize) -> String {
    let repeated = format!("{} ", DEFAULT.text).repeat(n / 100 + 2);
    let ids = hf
        .encode(repeated.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    hf.decode(&ids[..n - 1], false).unwrap()
}

/// Tokens of `text` as the model's tokenizer encodes it for the model (BOS included).
fn model_count(hf: &tokenizers::Tokenizer, text: &str) -> usize {
    hf.encode(text, true).unwrap().get_ids().len()
}

#[test]
fn prompts_for_a_bos_tokenizer_are_input_tokens_long_with_the_bos_as_the_kits_are() {
    let Some(path) = llama3_tokenizer::path() else {
        return;
    };
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    let tokenizer = Arc::new(Tokenizer::from_file(&path).unwrap());
    assert_eq!(tokenizer.special_tokens_added(), 1, "Llama 3 adds a BOS");
    let builder = PromptBuilder::new(Arc::clone(&tokenizer));
    for n in [40u32, 128, 1000, 3900] {
        let kit = kit_prompt(&hf, n as usize);
        // What the kit's client records as the prompt's length (`len(tokenizer.encode(...))`).
        assert_eq!(
            model_count(&hf, &kit),
            n as usize,
            "the kit's prompt at {n}"
        );
        for built in [
            builder.build(&DEFAULT, n).unwrap(),
            builder
                .build_tagged(&DEFAULT, n, request_tag(5, 1))
                .unwrap(),
        ] {
            assert_eq!(model_count(&hf, &built.text), n as usize, "{n}");
            assert_eq!(
                hf.encode(&*built.text, false).unwrap().get_ids().len(),
                n as usize - 1,
                "{n} text tokens less the BOS"
            );
            assert_eq!(built.tokens, n, "the record's prompt length");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_llama_3_tokenizer_counts_the_same_prompt_tokens_as_for_the_kits_prompt()
{
    let Some(path) = llama3_tokenizer::path() else {
        return;
    };
    let tokenizer = path.display().to_string();
    let yaml = bundle_yaml("").replace(
        "chat_template_tokens: 10\n",
        &format!("chat_template_tokens: 10\ntokenizer: {tokenizer}\n"),
    );
    let sim = start_simulator(&yaml).await;
    let dir = tempfile::tempdir().unwrap();
    let input = 128;
    let mut plan = plan_against(
        &sim,
        vec![concurrency_row("expert-a", input, 8, 4, 1)],
        dir.path(),
    );
    plan.options.tokenizer = Some(tokenizer);
    let result = run(plan).await;
    let records = individual_responses(&result, 0);
    // The server counts the text, its BOS and its 10-token template: 128 + 10.
    for record in &records {
        assert_eq!(record["server_number_input_tokens"], input + 10, "{record}");
    }
    // The kit's prompt for the same row costs the server the same.
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    let kit = kit_prompt(&hf, input as usize);
    let kit_count = server_prompt_tokens(&sim, &kit).await;
    assert_eq!(kit_count, u64::from(input) + 10);
    // And the tokenizer check, which counts the BOS too, finds no difference.
    let summary = &result.rows[0];
    let check = &summary.server_checks.tokenizer;
    assert_eq!(check.template_overhead, Some(10));
    assert_eq!(check.median_difference, Some(0.0));
    assert_eq!(check.mismatch, None);
    sim.shutdown().await.unwrap();
}

/// The prompt tokens the simulator reports for one request with `prompt`.
async fn server_prompt_tokens(sim: &TestSim, prompt: &str) -> u64 {
    let client = EndpointClient::new(
        ResolvedEndpoint {
            api: ApiKind::Sncloud,
            url: sim.base_url(),
            api_key: Some(ApiKey::new(KEY)),
            ca_certificate: None,
        },
        ClientOptions::default(),
    )
    .unwrap();
    let request = client
        .prepare(&RequestSpec {
            model: "expert-a",
            prompt,
            image: None,
            max_tokens: 8,
            ignore_eos: None,
            min_tokens: None,
            sampling_params: None,
        })
        .unwrap();
    let measured = client
        .send(&request, "kit-prompt", Duration::from_secs(30))
        .await;
    assert!(measured.error.is_none(), "{:?}", measured.error);
    measured.server.unwrap().input_tokens.unwrap()
}
