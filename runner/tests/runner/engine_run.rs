//! The engine end to end against the simulator over real loopback HTTP: kit inputs in, kit
//! files out, timings checked against the simulator's ground truth, switching time against the
//! injected switch, and failures that must not stop a run; and, against a scripted server
//! that captures bodies, sampling parameters on the wire and the saved generated texts.

use std::path::Path;

use calamine::{Reader, Xlsx, open_workbook};
use coebench_plan::input::kit_config::read_kit_config;
use coebench_plan::report::RunOutcome;
use coebench_runner::statistics::summary::RowOutcome;
use coebench_test_support::engine_support::*;
use coebench_test_support::kit_contract::{
    KIT_CONSOLIDATED_COLUMNS, KIT_RECORD_KEYS, kit_column_is_optional, kit_summary_problems,
};

/// The keys of the first record of an `*_individual_responses.json` file (written with an
/// indent of 4, so a record's own keys are the lines indented by 8 spaces), in file order.
fn first_record_keys(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .take_while(|line| !line.starts_with("    }"))
        .filter_map(|line| line.strip_prefix("        \""))
        .filter_map(|rest| rest.split_once("\":").map(|(key, _)| key.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_config_with_three_models_a_qps_row_and_an_image_row_writes_every_kit_file() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("model_configs.csv"),
        "model_name,input_tokens,output_tokens,num_requests,concurrent_requests,qps,qps_distribution,multimodal_img_size\n\
         expert-a,200,20,6,2,,,\n\
         expert-b,150,16,8,,20,,\n\
         vision,100,12,4,1,,,small\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        "model_configs_path: model_configs.csv\nllm_api: sncloud\noutput_files_dir: out\n\
         consolidated_results_dir: consolidated\ntimeout: 600\ntime_delay: 0\nuse_multiple_prompts: false\n",
    )
    .unwrap();
    let mut plan = read_kit_config(&dir.path().join("config.yaml"))
        .unwrap()
        .plan;
    plan.output.run_name = Some("kit-run".into());
    let result = run_with_env(
        plan,
        &[
            ("SAMBANOVA_API_KEY", KEY),
            ("SAMBANOVA_API_BASE", &sim.base_url()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.message
    );
    assert_eq!(result.run_dir, dir.path().join("out").join("kit-run"));

    // Per-row files, named as the kit names them, with the kit's keys in the kit's order.
    let names: Vec<&str> = result.rows.iter().map(|r| r.base_name.as_str()).collect();
    assert!(
        names[0].starts_with("synthetic_0_expert-a_200_20_2_stream_"),
        "{}",
        names[0]
    );
    assert!(
        names[1].starts_with("realworkload_1_expert-b_150_16_20-0_constant_stream_"),
        "{}",
        names[1]
    );
    assert!(
        names[2].starts_with("synthetic_2_vision_multimodal_small_100_12_1_stream_"),
        "{}",
        names[2]
    );
    for (i, row) in result.rows.iter().enumerate() {
        assert_eq!(row.outcome, RowOutcome::Ok, "row {i}");
        let text =
            std::fs::read_to_string(result.run_dir.join(row.individual_responses_file())).unwrap();
        let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(records.len() as u32, [6, 8, 4][i]);
        let keys = first_record_keys(&text);
        assert_eq!(&keys[..25], &KIT_RECORD_KEYS[..], "row {i} record keys");
        for record in &records {
            assert!(record["error_code"].is_null(), "{record}");
            assert!(record["client_ttft_s"].as_f64().unwrap() > 0.0);
            assert!(record["server_ttft_s"].as_f64().unwrap() > 0.0);
        }
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(result.run_dir.join(row.summary_file())).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["name"], format!("{}_summary", row.base_name));
        assert_eq!(summary["results_error_code_frequency"], "{}");
        assert_eq!(kit_summary_problems(&summary), Vec::<String>::new());
    }
    let vision = individual_responses(&result, 2);
    // 500 px in 50 px patches: 100 image tokens on top of 100 text + 10 template tokens.
    assert_eq!(vision[0]["server_number_input_tokens"], 210);
    assert!(
        std::fs::read_to_string(result.run_dir.join("run.json"))
            .unwrap()
            .contains("\"succeeded\"")
    );
    // Each row's spool of full records is gone once its files are written.
    let leftovers: Vec<_> = walk(&result.run_dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The consolidated table, read back with a real xlsx reader.
    let paths = result.consolidated.as_ref().expect("a consolidated table");
    assert_eq!(
        paths.xlsx,
        dir.path()
            .join("consolidated")
            .join("consolidated_results_kit-run.xlsx")
    );
    let mut book: Xlsx<_> = open_workbook(&paths.xlsx).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let header: Vec<String> = sheet
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    // pandas' unnamed index column, then the kit's columns in the kit's order: those it
    // always writes, and of its optional ones those some row has data for.
    assert_eq!(header[0], "");
    let kit_block: Vec<&str> = header[1..]
        .iter()
        .map(String::as_str)
        .take_while(|h| *h != "row_index")
        .collect();
    let expected: Vec<&str> = KIT_CONSOLIDATED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !kit_column_is_optional(c) || kit_block.contains(c))
        .collect();
    assert_eq!(kit_block, expected, "coebench's columns follow the kit's");
    for present in [
        "num_concurrent_requests",
        "qps",
        "multimodal_img_size",
        "server_ttft_s_p50",
    ] {
        assert!(kit_block.contains(&present), "{present} missing");
    }
    assert_eq!(sheet.rows().count(), 4, "a header and one line per row");
    assert!(paths.csv.exists() && paths.json.exists());
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_timings_agree_with_the_simulators_ground_truth() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    // A warm-up row loads expert-a into HBM, so the measured row has no switch in it.
    let rows = vec![
        concurrency_row("expert-a", 100, 8, 2, 1),
        concurrency_row("expert-a", 500, 40, 20, 1),
    ];
    let result = run(plan_against(&sim, rows, dir.path())).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    let records = individual_responses(&result, 1);
    let (mut ttft_errors, mut e2e_errors, mut rate_errors) = (Vec::new(), Vec::new(), Vec::new());
    for record in &records {
        let id = record["request_id"].as_str().unwrap();
        let truth = sim
            .truth_for(id)
            .unwrap_or_else(|| panic!("no truth for {id}"));
        let true_ttft = truth.first_token_s.unwrap() - truth.arrival_s;
        let true_e2e = truth.e2e_s.unwrap();
        let tokens = f64::from(truth.completion_tokens.unwrap());
        let true_rate =
            (tokens - 1.0) / (truth.last_token_s.unwrap() - truth.first_token_s.unwrap());
        ttft_errors.push(record["client_ttft_s"].as_f64().unwrap() - true_ttft);
        e2e_errors.push(record["client_end_to_end_latency_s"].as_f64().unwrap() - true_e2e);
        rate_errors.push(
            record["client_output_token_per_s_per_request"]
                .as_f64()
                .unwrap()
                / true_rate
                - 1.0,
        );
        assert_eq!(record["number_output_tokens"], 40);
    }
    let (ttft, e2e, rate) = (median(ttft_errors), median(e2e_errors), median(rate_errors));
    assert!(ttft.abs() < 0.002, "TTFT error p50 {ttft}");
    assert!(e2e.abs() < 0.002, "end-to-end error p50 {e2e}");
    assert!(rate.abs() < 0.02, "tokens/s relative error p50 {rate}");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_switch_is_reported_within_five_percent_and_rows_without_one_report_zero() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        concurrency_row("expert-a", 200, 10, 8, 1), // cold load of expert-a
        concurrency_row("expert-a", 200, 10, 8, 1), // resident: no switch
        concurrency_row("expert-b", 200, 10, 8, 1), // evicts expert-a: switch
        concurrency_row("expert-b", 200, 10, 8, 1), // resident: no switch
        concurrency_row("expert-a", 200, 10, 8, 1), // switch back
        concurrency_row("vision", 100, 10, 8, 1),   // 5 GB fits beside expert-a: 0.02 s load
    ];
    let result = run(plan_against(&sim, rows, dir.path())).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    let injected = 50.0 / 250.0;
    let switching: Vec<f64> = result
        .rows
        .iter()
        .map(|r| {
            r.switching
                .switching_time_s
                .expect("estimable with 8 requests")
        })
        .collect();
    for i in [0, 2, 4] {
        assert!(
            (switching[i] - injected).abs() <= 0.05 * injected,
            "row {i}: {switching:?}"
        );
    }
    for i in [1, 3] {
        assert_eq!(switching[i], 0.0, "row {i}: {switching:?}");
    }
    // The simulator's truth agrees: it paid exactly the injected delay on the first request of
    // rows 0, 2 and 4 and nothing anywhere else.
    for i in [0, 1, 2, 3, 4] {
        let records = individual_responses(&result, i);
        let paid: Vec<f64> = records
            .iter()
            .map(|r| {
                sim.truth_for(r["request_id"].as_str().unwrap())
                    .unwrap()
                    .switching_s
                    .unwrap()
            })
            .collect();
        let expect_first = if i % 2 == 0 { injected } else { 0.0 };
        assert!((paid[0] - expect_first).abs() < 1e-9, "row {i}: {paid:?}");
        assert!(paid[1..].iter().all(|p| *p == 0.0), "row {i}: {paid:?}");
        assert_eq!(
            records[0]["server_switching_time"].as_f64(),
            Some(switching[i])
        );
        assert!(
            records[1..]
                .iter()
                .all(|r| r["server_switching_time"].is_null())
        );
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_stalls_and_disconnects_are_recorded_the_run_goes_on_and_failed_rows_are_named() {
    let faulty = r#"
  - name: flaky
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      error: {probability: 0.3, status: 503}
      disconnect: {after_tokens: 5, probability: 0.2}
      stall: {after_tokens: 3, duration_ms: 300, probability: 0.2}
  - name: broken
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      error: {status: 500}
  - name: garbled
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [800]
    max_sequence_length: 4096
    faults:
      malformed_event: {after_tokens: 2}
"#;
    let sim = start_simulator(&bundle_yaml(faulty)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_against(
        &sim,
        vec![
            concurrency_row("flaky", 50, 20, 40, 4),
            concurrency_row("broken", 50, 20, 5, 1),
            concurrency_row("garbled", 50, 20, 3, 1),
            concurrency_row("expert-a", 50, 5, 2, 1),
        ],
        dir.path(),
    );
    plan.options.request_timeout_seconds = 10.0;
    let result = run(plan).await;
    // Rows 2 and 3 had every request fail: the run says so with its own exit code (6), in its
    // message and in run.json.
    assert_eq!(
        result.outcome,
        RunOutcome::RowsFailed,
        "{:?}",
        result.message
    );
    assert_eq!(result.exit_code(), 6);
    let message = result.message.as_deref().unwrap_or_default();
    assert!(message.contains("row(s) 2, 3"), "{message}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(result.run_dir.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["exit"]["code"], 6);
    assert_eq!(manifest["exit"]["failed_rows"], serde_json::json!([1, 2]));

    let flaky = &result.rows[0];
    assert_eq!(flaky.outcome, RowOutcome::Partial);
    assert_eq!(flaky.num_requests_started, 40);
    assert!(
        flaky.error_code_frequency.contains_key("503"),
        "{:?}",
        flaky.error_code_frequency
    );
    assert!(
        flaky.error_code_frequency.contains_key("stream-broken"),
        "{:?}",
        flaky.error_code_frequency
    );
    let records = individual_responses(&result, 0);
    let stalled = records
        .iter()
        .filter(|r| r["error_code"].is_null())
        .filter_map(|r| r["client_inter_token_latencies_s"].as_array())
        .filter(|gaps| gaps.iter().any(|g| g.as_f64().unwrap() > 0.25))
        .count();
    assert!(
        stalled > 0,
        "a 300 ms stall shows as one long inter-token gap"
    );

    // A row whose every request failed still has its files and its line in the table.
    let broken = &result.rows[1];
    assert_eq!(broken.outcome, RowOutcome::AllFailed);
    assert_eq!(broken.error_code_frequency.get("500"), Some(&5));
    assert!(
        result
            .run_dir
            .join(broken.individual_responses_file())
            .exists()
    );
    assert!(result.run_dir.join(broken.summary_file()).exists());
    let garbled = individual_responses(&result, 2);
    assert!(
        garbled.iter().all(|r| r["error_code"] == "malformed-event"),
        "{garbled:?}"
    );
    let table = std::fs::read_to_string(&result.consolidated.as_ref().unwrap().csv).unwrap();
    assert_eq!(table.lines().count(), 5);
    assert_eq!(result.rows[3].outcome, RowOutcome::Ok);
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_stop_the_run_at_once_and_never_leak_the_key() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 50, 5, 50, 2),
            concurrency_row("expert-b", 50, 5, 50, 2),
        ],
        dir.path(),
    );
    let wrong = "sk-wrong-key-987654";
    let result = run_with_env(plan, &[("SAMBANOVA_API_KEY", wrong)])
        .await
        .unwrap();
    assert_eq!(result.outcome, RunOutcome::AuthenticationFailed);
    assert_eq!(result.exit_code(), 3);
    assert!(result.message.as_ref().unwrap().contains("401"));
    assert!(
        result.rows[0].num_requests_started <= 4,
        "stops after the first answers"
    );
    assert_eq!(result.rows[1].outcome, RowOutcome::NotRun);
    let table = std::fs::read_to_string(&result.consolidated.as_ref().unwrap().csv).unwrap();
    assert_eq!(
        table.lines().count(),
        3,
        "every plan row keeps its line: {table}"
    );
    for entry in walk(dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(wrong),
            "the key leaked into {}",
            entry.display()
        );
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_fail_before_anything_is_sent_naming_the_variable() {
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_against(
        &sim,
        vec![concurrency_row("expert-a", 50, 5, 2, 1)],
        dir.path(),
    );
    let err = run_with_env(plan, &[]).await.unwrap_err().to_string();
    assert!(err.contains("SAMBANOVA_API_KEY"), "{err}");
    assert!(sim.truth().is_empty(), "nothing may be sent");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_validated_against_the_simulators_sequence_lengths_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let sim_file = dir.path().join("sim.yaml");
    std::fs::write(&sim_file, bundle_yaml("")).unwrap();
    let sim = start_simulator(&bundle_yaml("")).await;
    let mut plan = plan_against(
        &sim,
        vec![
            concurrency_row("expert-a", 4000, 200, 2, 1),
            concurrency_row("nobody", 10, 10, 1, 1),
        ],
        dir.path(),
    );
    plan.endpoint = coebench_plan::EndpointSpec {
        api: coebench_plan::ApiKind::Simulator,
        url: None,
        api_key_env: None,
        simulator: Some(sim_file.display().to_string()),
        ca_certificate: None,
    };
    let err = run_with_env(plan, &[]).await.unwrap_err().to_string();
    assert!(
        err.contains("row 1 (model \"expert-a\")")
            && err.contains("exceed the sequence length 4096"),
        "{err}"
    );
    assert!(
        err.contains("row 2 (model \"nobody\")") && err.contains("does not serve"),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_stop_early_are_counted_unless_ignore_eos_holds_them_to_max_tokens() {
    let talker = r#"
  - name: talker
    weights_gb: 1
    prefill_tokens_per_sec: 50000
    decode_tokens_per_sec: [2000]
    max_sequence_length: 4096
    natural_length: {min: 3, max: 8}
"#;
    let sim = start_simulator(&bundle_yaml(talker)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut stops = concurrency_row("talker", 20, 16, 6, 2);
    stops.ignore_eos = Some(false);
    let held = concurrency_row("talker", 20, 16, 6, 2); // ignore_eos by default
    let result = run(plan_against(&sim, vec![stops, held], dir.path())).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    let checks = &result.rows[0].server_checks;
    assert_eq!(
        (checks.stopped_early, checks.stopped_early_share),
        (6, Some(1.0))
    );
    assert!(
        individual_responses(&result, 0)
            .iter()
            .all(|r| r["stopped_early"] == true && r["number_output_tokens"].as_u64() < Some(16))
    );
    let checks = &result.rows[1].server_checks;
    assert_eq!(
        (checks.stopped_early, checks.stopped_early_share),
        (0, Some(0.0))
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_parameters_reach_the_server_and_generated_texts_are_saved() {
    use coebench_test_support::scripted_server::*;
    let stream = vec![
        sse_head(),
        chunk(content("Hi")),
        chunk(content(" there")),
        chunk("data: [DONE]\n\n"),
        last_chunk(),
    ];
    let server = ScriptedServer::start(vec![stream]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut row = concurrency_row("m", 20, 4, 3, 1);
    row.sampling_params
        .insert("top_k".into(), serde_json::json!(5));
    let mut plan = plan_against_url(&server.url("/v1"), vec![row], dir.path());
    plan.endpoint.api = coebench_plan::ApiKind::Openai;
    plan.options
        .sampling_params
        .insert("temperature".into(), serde_json::json!(0.2));
    plan.options
        .sampling_params
        .insert("top_k".into(), serde_json::json!(50));
    plan.options.save_response_texts = true;
    let result = run_with_env(plan, &[]).await.unwrap();
    assert_eq!(
        result.rows[0].outcome,
        RowOutcome::Ok,
        "{:?}",
        result.message
    );
    let bodies: Vec<serde_json::Value> = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json())
        .collect();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        // The run's parameter, and the row's over the run's.
        assert_eq!(body["temperature"], 0.2, "{body}");
        assert_eq!(body["top_k"], 5, "{body}");
        assert_eq!(body["max_tokens"], 4);
    }
    let texts_file = result
        .run_dir
        .join(result.rows[0].response_texts_file.as_ref().unwrap());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&texts_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let mut seen: Vec<u64> = lines
        .iter()
        .map(|l| l["request_idx"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    for line in &lines {
        assert_eq!(line["completion"], "Hi there");
        assert_eq!(line["prompt"]["name"], "default");
        assert!(
            bodies
                .iter()
                .any(|b| b["messages"][0]["content"] == line["prompt"]["template"]),
            "the saved prompt is one that was sent: {line}"
        );
    }
    // Nothing hidden is left in the run folder.
    let leftovers: Vec<_> = walk(&result.run_dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodput_counts_requests_meeting_the_objectives_with_failures_as_misses() {
    // expert-a answers 16 tokens in well under a second: every success meets a 30 s bound.
    let sim = start_simulator(&bundle_yaml("")).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![concurrency_row("expert-a", 64, 16, 12, 2)];
    let mut plan = plan_against(&sim, rows.clone(), dir.path());
    plan.options.objectives = Some(coebench_plan::Objectives {
        e2e_seconds: Some(30.0),
        ..Default::default()
    });
    let generous = run(plan).await;
    let g = generous.rows[0].goodput.expect("objectives give goodput");
    assert_eq!(g.counted, 12);
    assert_eq!(
        g.met, generous.rows[0].num_completed_requests,
        "every success meets 30 s"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(generous.run_dir.join(generous.rows[0].summary_file())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary["results_goodput"],
        serde_json::json!(g.share.unwrap())
    );
    assert_eq!(generous.rows[0].row_report().goodput, g.share);

    let mut plan = plan_against(&sim, rows, &dir.path().join("strict"));
    plan.output.run_name = Some("strict".into());
    plan.options.objectives = Some(coebench_plan::Objectives {
        ttft_seconds: Some(1e-6),
        ..Default::default()
    });
    let strict = run(plan).await;
    assert_eq!(strict.rows[0].goodput.unwrap().share, Some(0.0));
    sim.shutdown().await.unwrap();
}
