//! Rows whose prompts come from a jsonl dataset (the kit's custom-dataset format), against the
//! simulator over loopback HTTP: the prompts are sent as they are, in file order (`cycle`) or
//! drawn from the seed (`sample`), with a line's image when it names one, and the simulator's
//! truth log shows each request's prompt length; a bad dataset stops the run before anything
//! is sent, naming the file and line.

use coebench_plan::input::InputErrors;
use coebench_plan::report::RunOutcome;
use coebench_plan::{Dataset, DatasetOrder, ImageSize};
use coebench_runner::engine::arrival::row_seed;
use coebench_runner::engine::run::RunError;
use coebench_runner::workload::image::jpeg_bytes;
use coebench_runner::workload::prompt::dataset::DatasetPrompts;
use coebench_support::tokenizer::{TokenCounter, Tokenizer};
use coebench_test_support::engine_support::{
    KEY, bundle_yaml, concurrency_row, individual_responses, plan_against, run_with_env,
    start_simulator,
};

/// The simulator bundle's chat template, in prompt tokens.
const TEMPLATE_TOKENS: u32 = 10;

const PROMPTS: [&str; 3] = [
    "Here is a list of numbers: 5, 12, 8, 20, 3. Find the median value.",
    "Summarise the history of mixture-of-experts models in three sentences.",
    "Translate 'good morning' into French, German and Japanese.",
];

/// The request index of a truth record (request ids end in `-<row>-<index>`); `None` for the
/// engine's chat-template probe.
fn index_of(request_id: &str) -> Option<u64> {
    request_id.rsplit('-').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_rows_send_their_prompts_as_they_are_cycling_sampling_and_with_images() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl: String = PROMPTS
        .iter()
        .map(|p| format!("{}\n", serde_json::json!({"prompt": p})))
        .collect();
    let text_file = dir.path().join("prompts.jsonl");
    std::fs::write(&text_file, jsonl).unwrap();
    std::fs::create_dir(dir.path().join("imgs")).unwrap();
    std::fs::write(
        dir.path().join("imgs/photo.jpg"),
        jpeg_bytes(ImageSize::Small).unwrap(),
    )
    .unwrap();
    let vision_file = dir.path().join("vision.jsonl");
    std::fs::write(
        &vision_file,
        "{\"prompt\": \"Describe the image.\", \"image_path\": \"imgs/photo.jpg\"}\n\
         {\"prompt\": \"No image on this line.\"}\n",
    )
    .unwrap();

    let dataset = |path: &std::path::Path, order| Dataset {
        path: path.display().to_string(),
        order,
    };
    let mut cycling = concurrency_row("expert-a", 100, 4, 5, 1);
    cycling.dataset = Some(dataset(&text_file, DatasetOrder::Cycle));
    let mut sampling = concurrency_row("expert-b", 100, 4, 12, 2);
    sampling.dataset = Some(dataset(&text_file, DatasetOrder::Sample));
    let mut vision = concurrency_row("vision", 100, 4, 2, 1);
    vision.dataset = Some(dataset(&vision_file, DatasetOrder::Cycle));
    let plan = plan_against(&sim, vec![cycling, sampling, vision], dir.path());
    let seed = plan.options.seed;
    let result = run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );

    let tokenizer = Tokenizer::embedded();
    let tokens = |text: &str| tokenizer.count_tokens(text) as u32;
    let truth = sim.truth();
    let sent = |row: usize| -> Vec<(u64, u32, u32)> {
        let mut sent: Vec<(u64, u32, u32)> = truth
            .iter()
            .filter(|t| t.model.as_deref() == Some(&result.rows[row].model))
            .filter_map(|t| {
                Some((
                    index_of(&t.request_id)?,
                    t.prompt_tokens.unwrap(),
                    t.image_tokens,
                ))
            })
            .collect();
        sent.sort_unstable();
        sent
    };

    // Cycling: request i sends line i mod 3, exactly as written (the simulator counts it with
    // the same cl100k_base, plus its chat template).
    let expected: Vec<(u64, u32, u32)> = (0..5u64)
        .map(|i| (i, tokens(PROMPTS[i as usize % 3]) + TEMPLATE_TOKENS, 0))
        .collect();
    assert_eq!(sent(0), expected);
    for record in individual_responses(&result, 0) {
        assert_eq!(record["prompt_name"], "custom_prompt", "{record}");
    }

    // Sampling: the lines the seed draws, the same the dataset module computes.
    let prompts = DatasetPrompts::read(&text_file).unwrap();
    let drawn: Vec<(u64, u32, u32)> = (0..12u64)
        .map(|i| {
            let line = prompts.line(prompts.position(DatasetOrder::Sample, row_seed(seed, 1), i));
            (i, tokens(&line.prompt) + TEMPLATE_TOKENS, 0)
        })
        .collect();
    assert_eq!(sent(1), drawn);
    let distinct: std::collections::BTreeSet<u32> = drawn.iter().map(|d| d.1).collect();
    assert!(distinct.len() > 1, "sampling drew one line only: {drawn:?}");

    // A line's image is sent with it; a line without one sends text only.
    let vision_sent = sent(2);
    assert!(vision_sent[0].2 > 0, "{vision_sent:?}");
    assert_eq!(
        vision_sent[0].1 - vision_sent[0].2,
        tokens("Describe the image.") + TEMPLATE_TOKENS
    );
    assert_eq!(
        vision_sent[1],
        (1, tokens("No image on this line.") + TEMPLATE_TOKENS, 0)
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_dataset_stops_the_run_before_sending_naming_the_file_and_line() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"fine\"}\n{\"prompt\": \"x\", \"extra\": 1}\n{\"prompt\": \"x\", \"image_path\": \"gone.png\"}\n",
    )
    .unwrap();
    let mut row = concurrency_row("expert-a", 100, 4, 2, 1);
    row.dataset = Some(Dataset {
        path: file.display().to_string(),
        order: DatasetOrder::Cycle,
    });
    let plan = plan_against(&sim, vec![row], dir.path());
    let err = run_with_env(plan, &[("SAMBANOVA_API_KEY", KEY)])
        .await
        .unwrap_err();
    let RunError::InvalidInput(InputErrors(errors)) = &err else {
        panic!("{err}");
    };
    let located: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.source.clone(), e.location.clone()))
        .collect();
    let source = file.display().to_string();
    assert_eq!(
        located,
        [
            (source.clone(), "line 2".to_string()),
            (source, "line 3".to_string())
        ]
    );
    let message = err.to_string();
    assert!(message.contains("unknown key(s) [\"extra\"]"), "{message}");
    assert!(
        message.contains("cannot read image_path \"gone.png\""),
        "{message}"
    );
    assert!(sim.truth().is_empty(), "nothing was sent");
    sim.shutdown().await.unwrap();
}
