//! Per-model tokenizers from a Hugging Face hub on loopback (`HF_ENDPOINT` pointing at a
//! [`FakeHub`]): a repository's `tokenizer.json` is downloaded once into the cache, the second
//! use reads the cache without connecting, `HF_HUB_OFFLINE=1` works from the cache alone, and a
//! gated repository without `HF_TOKEN` stops the run before anything is sent with an error
//! that names the model, the repository and the fix. The file served is a real Llama 3.2
//! `tokenizer.json` when `COEBENCH_LLAMA3_TOKENIZER` names one (.ci/run sets it from
//! .ci/llama3-tokenizer), else the small test BPE.

use std::collections::HashMap;
use std::path::Path;

use coebench_plan::RunOptions;
use coebench_plan::report::RunOutcome;
use coebench_plan::tokenizers::TokenizerRule;
use coebench_runner::engine::run::RunError;
use coebench_runner::workload::tokenizers::hub::{HubError, HubSettings, tokenizer_file};
use coebench_runner::workload::tokenizers::{ModelTokenizers, TokenizerOrigin};
use coebench_support::tokenizer::fixtures::small_bpe_json;
use coebench_support::tokenizer::{TokenCounter, Tokenizer};
use coebench_test_support::engine_support::{
    KEY, bundle_yaml, concurrency_row, plan_against, run_with_env, start_simulator,
};
use coebench_test_support::fake_hub::{FakeHub, HubRepo};

const GATED_TOKEN: &str = "hf_gated_0123456789secret";

/// The real Llama 3.2 tokenizer when CI fetched it, else the small BPE (the download path is
/// the same either way).
fn llama_tokenizer_bytes() -> Vec<u8> {
    match std::env::var("COEBENCH_LLAMA3_TOKENIZER") {
        Ok(path) if !path.is_empty() => {
            std::fs::read(&path).unwrap_or_else(|e| panic!("COEBENCH_LLAMA3_TOKENIZER {path}: {e}"))
        }
        _ => {
            eprintln!(
                "note: COEBENCH_LLAMA3_TOKENIZER is unset; serving the small test BPE instead of \
                 a real Llama 3.2 tokenizer (set it from `bash .ci/llama3-tokenizer`)"
            );
            small_bpe_json().into_bytes()
        }
    }
}

fn repo(name: &str, tokenizer: Vec<u8>, token: Option<&str>) -> HubRepo {
    HubRepo {
        name: name.into(),
        files: HashMap::from([("tokenizer.json".to_string(), tokenizer)]),
        token: token.map(str::to_string),
    }
}

/// A hub with a public Llama repository (the kit's for Llama 3.2 names), a public small BPE
/// and a gated repository.
fn hub() -> FakeHub {
    let llama = llama_tokenizer_bytes();
    FakeHub::start(vec![
        repo("unsloth/Llama-3.2-1B-Instruct", llama.clone(), None),
        repo("test-org/small-bpe", small_bpe_json().into_bytes(), None),
        repo("meta-test/Gated-Llama", llama, Some(GATED_TOKEN)),
    ])
}

fn settings(vars: &[(&str, &str)]) -> HubSettings {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HubSettings::from_env(&move |name: &str| vars.get(name).cloned())
}

fn downloads_of(hub: &FakeHub, repo: &str) -> usize {
    hub.requests()
        .iter()
        .filter(|r| r.path.starts_with(&format!("/{repo}/resolve/")))
        .count()
}

#[test]
fn a_repository_tokenizer_is_downloaded_once_then_read_from_the_cache_even_offline() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().display().to_string();
    let online = settings(&[("HF_ENDPOINT", &hub.url()), ("HF_HOME", &home_path)]);
    assert_eq!(online.cache_dir, home.path().join("hub"));

    let first = tokenizer_file(&online, "unsloth/Llama-3.2-1B-Instruct", None).unwrap();
    assert_eq!(std::fs::read(&first).unwrap(), llama_tokenizer_bytes());
    assert!(
        first.starts_with(home.path().join("hub")),
        "{}",
        first.display()
    );
    let requests = downloads_of(&hub, "unsloth/Llama-3.2-1B-Instruct");
    assert!(
        requests >= 2,
        "a probe and a download: {:?}",
        hub.requests()
    );
    // The cached file loads as a tokenizer and sizes text.
    let tokenizer = Tokenizer::from_file(&first).unwrap();
    assert!(tokenizer.count_tokens("the composition of experts") > 0);

    // Second use: from the cache, no request.
    let second = tokenizer_file(&online, "unsloth/Llama-3.2-1B-Instruct", None).unwrap();
    assert_eq!(second, first);
    assert_eq!(
        downloads_of(&hub, "unsloth/Llama-3.2-1B-Instruct"),
        requests
    );

    // Offline with that cache: the same file, still no request.
    let offline = settings(&[
        ("HF_ENDPOINT", &hub.url()),
        ("HF_HOME", &home_path),
        ("HF_HUB_OFFLINE", "1"),
    ]);
    assert!(offline.offline);
    assert_eq!(
        tokenizer_file(&offline, "unsloth/Llama-3.2-1B-Instruct", None).unwrap(),
        first
    );
    // Offline, a repository not in the cache: an error saying what to do, no request.
    let err = tokenizer_file(&offline, "test-org/small-bpe", None).unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("test-org/small-bpe") && message.contains("HF_HUB_OFFLINE"),
        "{message}"
    );
    assert_eq!(downloads_of(&hub, "test-org/small-bpe"), 0);
}

#[test]
fn a_gated_repository_needs_hf_token_and_the_token_never_shows() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().display().to_string();
    let base = [("HF_ENDPOINT", hub.url()), ("HF_HOME", home_path.clone())];
    let with = |extra: &[(&str, &str)]| {
        let mut vars: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.extend_from_slice(extra);
        settings(&vars)
    };

    let err = tokenizer_file(&with(&[]), "meta-test/Gated-Llama", None).unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("meta-test/Gated-Llama") && message.contains("set HF_TOKEN"),
        "{message}"
    );

    let wrong = with(&[("HF_TOKEN", "hf_wrong_token_value")]);
    assert!(!format!("{wrong:?}").contains("hf_wrong_token_value"));
    let message = tokenizer_file(&wrong, "meta-test/Gated-Llama", None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("has no access"), "{message}");
    assert!(!message.contains("hf_wrong_token_value"), "{message}");

    let path = tokenizer_file(
        &with(&[("HF_TOKEN", GATED_TOKEN)]),
        "meta-test/Gated-Llama",
        None,
    )
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), llama_tokenizer_bytes());
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.authorized && r.status == 206),
        "{:?}",
        hub.requests()
    );

    let missing = tokenizer_file(&with(&[]), "nobody/no-such-model", None).unwrap_err();
    assert!(matches!(missing, HubError::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("nobody/no-such-model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_get_their_mapped_tokenizer_then_the_kits_family_default_then_the_embedded_one() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local-tokenizer.json");
    std::fs::write(&local, small_bpe_json()).unwrap();
    let options = RunOptions {
        tokenizers: vec![
            TokenizerRule {
                model: "expert-*".into(),
                tokenizer: local.display().to_string(),
            },
            TokenizerRule {
                model: "expert-a".into(),
                tokenizer: "test-org/small-bpe".into(),
            },
        ],
        ..RunOptions::default()
    };
    let models: Vec<String> = ["expert-a", "expert-b", "Llama-3.2-1B-Instruct", "mystery"]
        .map(String::from)
        .to_vec();
    let hub_settings = settings(&[
        ("HF_ENDPOINT", &hub.url()),
        ("HF_HOME", &home.path().display().to_string()),
    ]);
    let resolved = ModelTokenizers::resolve(&models, &options, false, &hub_settings)
        .await
        .unwrap();
    let of = |m: &str| resolved.for_model(m);
    assert_eq!(of("expert-a").source, "test-org/small-bpe");
    assert_eq!(of("expert-a").origin, TokenizerOrigin::Mapped);
    assert_eq!(of("expert-b").source, local.display().to_string());
    assert_eq!(
        of("Llama-3.2-1B-Instruct").source,
        "unsloth/Llama-3.2-1B-Instruct"
    );
    assert_eq!(
        of("Llama-3.2-1B-Instruct").origin,
        TokenizerOrigin::KitFamily
    );
    assert_eq!(of("mystery").origin, TokenizerOrigin::Fallback);
    assert_eq!(of("mystery").tokenizer.name(), "cl100k_base");
    // The two small-BPE sources load the same definition, so they count alike.
    let text = "the theory of routing";
    assert_eq!(
        of("expert-a").tokenizer.count_tokens(text),
        of("expert-b").tokenizer.count_tokens(text)
    );

    // On the embedded simulator, unmapped models keep the simulator's own tokenizer: no
    // download for the Llama name.
    let before = hub.requests().len();
    let simulated = ModelTokenizers::resolve(&models, &RunOptions::default(), true, &hub_settings)
        .await
        .unwrap();
    assert_eq!(
        simulated.for_model("Llama-3.2-1B-Instruct").origin,
        TokenizerOrigin::Simulator
    );
    assert_eq!(hub.requests().len(), before);

    // A family default that cannot be had falls back to the embedded tokenizer (with a
    // warning) instead of failing the run.
    let unreachable = settings(&[
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HOME", &dir.path().join("empty").display().to_string()),
    ]);
    let fallback =
        ModelTokenizers::resolve(&models[2..3], &RunOptions::default(), false, &unreachable)
            .await
            .unwrap();
    assert_eq!(
        fallback.for_model("Llama-3.2-1B-Instruct").origin,
        TokenizerOrigin::Fallback
    );
}

/// A bundle with a model named as SambaNova names Llama 3.2, beside the test experts.
const LLAMA_MODEL_YAML: &str = r#"
  - name: Llama-3.2-1B-Instruct
    weights_gb: 2
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 8192
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sizes_each_models_prompts_with_its_tokenizer_and_reuses_the_cache_offline() {
    let hub = hub();
    let sim = start_simulator(&bundle_yaml(LLAMA_MODEL_YAML)).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf-home").display().to_string();
    let mut plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 200, 4, 3, 1),
            concurrency_row("Llama-3.2-1B-Instruct", 200, 4, 3, 1),
            concurrency_row("expert-b", 200, 4, 3, 1),
        ],
        dir.path(),
    );
    plan.options.tokenizers = vec![TokenizerRule {
        model: "expert-a".into(),
        tokenizer: "test-org/small-bpe".into(),
    }];
    let url = hub.url();
    let env = [
        ("SAMBANOVA_API_KEY", KEY),
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HOME", home.as_str()),
    ];
    let result = run_with_env(plan.clone(), &env).await.unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );
    assert!(downloads_of(&hub, "test-org/small-bpe") >= 2);
    assert!(downloads_of(&hub, "unsloth/Llama-3.2-1B-Instruct") >= 2);
    // The simulator counts with cl100k_base: expert-a's prompts, sized with the small BPE,
    // are far from 200 of its tokens and the tokenizer check says so; expert-b's, sized with
    // the embedded cl100k_base, match.
    let mismatch = |row: usize| result.rows[row].server_checks.tokenizer.mismatch.clone();
    assert!(mismatch(0).is_some(), "{:?}", result.rows[0].server_checks);
    assert!(mismatch(2).is_none(), "{:?}", mismatch(2));

    // Offline, from the cache the first run filled: the same run, no new request.
    let requests = hub.requests().len();
    let mut offline_plan = plan;
    offline_plan.output.run_name = Some("offline-run".into());
    let mut offline_env = env.to_vec();
    offline_env.push(("HF_HUB_OFFLINE", "1"));
    let offline = run_with_env(offline_plan, &offline_env).await.unwrap();
    assert_eq!(
        offline.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        offline.message
    );
    assert_eq!(hub.requests().len(), requests);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_tokenizer_without_hf_token_stops_the_run_before_sending_and_says_how_to_fix() {
    let hub = hub();
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_against(
        &sim,
        vec![concurrency_row("expert-a", 50, 4, 2, 1)],
        dir.path(),
    );
    plan.options.tokenizers = vec![TokenizerRule {
        model: "expert-*".into(),
        tokenizer: "meta-test/Gated-Llama".into(),
    }];
    let url = hub.url();
    let home = dir.path().join("hf").display().to_string();
    let err = run_with_env(
        plan,
        &[
            ("SAMBANOVA_API_KEY", KEY),
            ("HF_ENDPOINT", url.as_str()),
            ("HF_HOME", home.as_str()),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RunError::Tokenizer(_)), "{err}");
    let message = err.to_string();
    for needle in [
        "expert-a",
        "meta-test/Gated-Llama",
        "options.tokenizers",
        "set HF_TOKEN",
    ] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    assert!(sim.truth().is_empty(), "nothing was sent to the endpoint");
    assert!(!Path::new(&dir.path().join("out")).join("test-run").exists());
    sim.shutdown().await.unwrap();
}

#[test]
fn plans_reject_tokenizer_values_that_name_nothing() {
    let plan_text = "endpoint: {api: simulator}\n\
                     rows: [{model: m, inputTokens: 5, outputTokens: 2, numRequests: 1, concurrency: 1}]\n\
                     options:\n  tokenizers:\n    - {model: 'm*', tokenizer: 'a/b/c'}\n    - {model: ' ', tokenizer: embedded}\n";
    let plan = coebench_plan::input::plan_file::parse_plan(plan_text, "p.yaml", false).unwrap();
    let err = coebench_plan::input::validate::validate_plan(
        &plan,
        "p.yaml",
        &coebench_plan::input::validate::UnknownCatalog,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("options.tokenizers[0]") && err.contains("\"a/b/c\""),
        "{err}"
    );
    assert!(err.contains("options.tokenizers[1].model"), "{err}");
}
