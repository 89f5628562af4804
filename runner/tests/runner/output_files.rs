//! Every output file: names the kit's parser understands, per-row JSON files, the consolidated
//! xlsx/csv/json, and the run manifest.

use std::fs;
use std::path::Path;

use calamine::{Data, Reader, Xlsx, open_workbook};
use coebench_plan::report::RunOutcome;
use coebench_plan::{ApiKind, EndpointSpec, ImageSize};
use coebench_runner::client::measurement::ErrorKind;
use coebench_runner::output::naming::{self, row_base_name};
use coebench_runner::output::row_files::run_dir;
use coebench_runner::output::{
    ConsolidatedTable, ManifestExit, RunManifest, write_manifest, write_row_files,
};
use coebench_runner::statistics::record::RequestRecord;
use coebench_runner::statistics::summary::{RowOutcome, RowSummary};
use coebench_test_support::kit_contract::KIT_CONSOLIDATED_COLUMNS;
use coebench_test_support::output_fixtures::*;

/// coebench's consolidated columns, after the kit's.
const OUR_COLUMNS: [&str; 47] = [
    "row_index",
    "uuid",
    "outcome",
    "num_requests_planned",
    "num_requests_not_sent",
    "error_rate",
    "error_class_frequency",
    "row_duration_s",
    "switching_time_source",
    "requests_grouping",
    "requests_batching",
    "server_ttft_s_p90",
    "server_ttft_s_p99",
    "client_ttft_s_p90",
    "client_ttft_s_p99",
    "client_end_to_end_latency_s_p90",
    "client_end_to_end_latency_s_p99",
    "client_server_ttft_gap_s_p50",
    "client_server_ttft_gap_s_p90",
    "client_server_ttft_gap_s_p99",
    "client_tpot_s_p50",
    "client_tpot_s_p90",
    "client_tpot_s_p99",
    "client_mean_inter_token_latency_s_p50",
    "client_mean_inter_token_latency_s_p90",
    "client_mean_inter_token_latency_s_p99",
    "dispatch_delay_s_p50",
    "dispatch_delay_s_p99",
    "dispatch_delay_s_max",
    "target_qps",
    "achieved_qps",
    "target_concurrency",
    "mean_in_flight",
    "client_event_loop_lag_p99_s",
    "client_cpu_utilization",
    "client_saturated",
    "stale_connection_retries",
    "stopped_early",
    "stopped_early_share",
    "goodput",
    "server_timings",
    "cached_input_share",
    "tokenizer_mismatch",
    "started_at",
    "summary_file",
    "individual_responses_file",
    "response_texts_file",
];

/// The whole header of the sample rows' table: the kit's columns (without
/// `multimodal_img_size`, which no sample row has, as the kit leaves it out), then ours.
fn expected_header() -> Vec<&'static str> {
    KIT_CONSOLIDATED_COLUMNS
        .iter()
        .filter(|c| **c != "multimodal_img_size")
        .chain(&OUR_COLUMNS)
        .copied()
        .collect()
}

/// What the kit's `FileNameParser.extract_file_info` recovers from a file name.
#[derive(Debug, PartialEq)]
struct KitFileInfo {
    model: String,
    input_tokens: String,
    output_tokens: String,
    concurrency: Option<String>,
    qps: Option<f64>,
}

/// The kit's split: on `_`, model = part 2, tokens = parts 3 and 4 (5 and 6 when multimodal),
/// part 5 (or 7) the concurrency of `synthetic` or the qps (`-` -> `.`) of `realworkload`.
fn kit_parse(file_name: &str) -> KitFileInfo {
    let parts: Vec<&str> = file_name.split('_').collect();
    let shift = if parts[3] == "multimodal" { 2 } else { 0 };
    let load = parts[5 + shift];
    KitFileInfo {
        model: parts[2].to_string(),
        input_tokens: parts[3 + shift].to_string(),
        output_tokens: parts[4 + shift].to_string(),
        concurrency: (parts[0] == "synthetic").then(|| load.to_string()),
        qps: (parts[0] == "realworkload").then(|| load.replace('-', ".").parse().unwrap()),
    }
}

#[test]
fn file_names_parse_back_with_the_kits_split() {
    let uuid = uuid::Uuid::new_v4();
    let base = row_base_name(
        3,
        &concurrency_row("Bundle/Meta_Llama-3.3-70B", 16, 64),
        &uuid,
    );
    assert_eq!(
        base,
        format!("synthetic_3_Bundle-Meta-Llama-3-3-70B_1000_100_16_stream_{uuid}")
    );
    assert_eq!(
        kit_parse(&naming::summary_file(&base)),
        KitFileInfo {
            model: "Bundle-Meta-Llama-3-3-70B".into(),
            input_tokens: "1000".into(),
            output_tokens: "100".into(),
            concurrency: Some("16".into()),
            qps: None,
        }
    );
    for (qps, text) in [(1.0, "1-0"), (0.5, "0-5"), (2.25, "2-25")] {
        let base = row_base_name(
            0,
            &rate_row("Llama-4-Maverick", qps, Some(ImageSize::Large)),
            &uuid,
        );
        assert_eq!(
            base,
            format!(
                "realworkload_0_Llama-4-Maverick_multimodal_large_500_50_{text}_exponential_stream_{uuid}"
            )
        );
        let info = kit_parse(&naming::individual_responses_file(&base));
        assert_eq!(info.model, "Llama-4-Maverick");
        assert_eq!(
            (info.input_tokens.as_str(), info.output_tokens.as_str()),
            ("500", "50")
        );
        assert_eq!(info.qps, Some(qps));
    }
}

fn sample_rows() -> Vec<RowSummary> {
    let first = finish_row(
        0,
        concurrency_row("Meta-Llama-3.3-70B-Instruct", 2, 4),
        &[
            ok(0, 900, 0.85),
            ok(0, 900, 0.85),
            ok(1000, 100, 0.05),
            failed(1000, 1100, ErrorKind::Http(503)),
        ],
        0,
    );
    let second = finish_row(
        1,
        rate_row("Qwen2.5-72B", 0.5, None),
        &[
            failed(0, 10, ErrorKind::Http(503)),
            failed(2000, 2010, ErrorKind::Http(503)),
        ],
        2,
    );
    vec![first.summary, second.summary]
}

fn assert_only_files(dir: &Path, expected: &[String]) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(names, expected, "no temporary files are left behind");
}

#[test]
fn row_files_are_written_even_when_every_request_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(tmp.path(), "20260101-000000.000000");
    let ok_row = finish_row(
        0,
        concurrency_row("m", 1, 3),
        &[ok(0, 100, 0.1), ok(200, 100, 0.1), ok(400, 100, 0.1)],
        0,
    );
    let failed_row = finish_row(
        1,
        concurrency_row("m", 1, 1),
        &[failed(0, 10, ErrorKind::Connect)],
        0,
    );
    let mut expected = Vec::new();
    for result in [&ok_row, &failed_row] {
        let paths = write_row_files(&dir, result).unwrap();
        let records_json = fs::read_to_string(&paths.individual_responses).unwrap();
        let summary_json = fs::read_to_string(&paths.summary).unwrap();
        assert_strict_json(&records_json);
        assert_strict_json(&summary_json);
        assert!(records_json.starts_with("[\n    {\n        \"error_code\": "));
        let records: Vec<RequestRecord> = serde_json::from_str(&records_json).unwrap();
        assert_eq!(records, result.read_records().unwrap());
        let idx: Vec<u32> = records.iter().map(|r| r.request_idx).collect();
        assert_eq!(idx, (0..records.len() as u32).collect::<Vec<_>>());
        assert_eq!(ordered_keys(&summary_json)[0], "name");
        expected.push(result.summary.summary_file());
        expected.push(result.summary.individual_responses_file());
    }
    assert_eq!(failed_row.summary.outcome, RowOutcome::AllFailed);
    assert_only_files(&dir, &expected);
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(x) => x.to_string(),
        Data::Int(n) => n.to_string(),
        Data::Bool(b) => b.to_string(),
        other => panic!("unexpected cell {other:?}"),
    }
}

#[test]
fn the_consolidated_table_reads_back_identically_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = sample_rows();
    let mut table = ConsolidatedTable::new("run-1");
    // Written after each row, as the engine does; the second write replaces the first.
    table.insert(&rows[0]);
    table.write(tmp.path()).unwrap();
    table.insert(&rows[1]);
    let paths = table.write(tmp.path()).unwrap();
    assert_eq!(
        paths.xlsx,
        tmp.path().join("consolidated_results_run-1.xlsx")
    );
    assert_only_files(
        tmp.path(),
        &["csv", "json", "xlsx"].map(|ext| format!("consolidated_results_run-1.{ext}")),
    );

    // xlsx
    let mut workbook: Xlsx<_> = open_workbook(&paths.xlsx).unwrap();
    let range = workbook.worksheet_range("Sheet1").unwrap();
    let xlsx_rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
    let header: Vec<String> = xlsx_rows[0].iter().map(cell_text).collect();
    // pandas' layout: an unnamed index column first, 0, 1, ... in plan order.
    assert_eq!(header[0], "");
    assert_eq!(header[1..], expected_header());
    assert_eq!(xlsx_rows.len(), 3, "header plus one row per plan row");
    assert_eq!(
        [&xlsx_rows[1][0], &xlsx_rows[2][0]],
        [&Data::Float(0.0), &Data::Float(1.0)]
    );
    let col = |name: &str| 1 + expected_header().iter().position(|c| *c == name).unwrap();
    let first = &xlsx_rows[1];
    assert_eq!(cell_text(&first[col("uuid")]), rows[0].row_uuid.to_string());
    assert_eq!(cell_text(&first[col("name")]), rows[0].name);
    assert_eq!(
        cell_text(&first[col("model")]),
        "Meta-Llama-3.3-70B-Instruct"
    );
    assert_eq!(first[col("num_input_tokens")], Data::Float(1000.0));
    assert_eq!(first[col("num_concurrent_requests")], Data::Float(2.0));
    assert_eq!(first[col("qps")], Data::Empty);
    assert_eq!(first[col("server_ttft_s_min")], Data::Float(0.05));
    assert_eq!(first[col("server_ttft_s_max")], Data::Float(0.85));
    assert_eq!(first[col("number_errors")], Data::Float(1.0));
    assert_eq!(cell_text(&first[col("error_code_frequency")]), "{'503': 1}");
    assert_eq!(cell_text(&first[col("requests_grouping")]), "[2, 1]");
    assert_eq!(cell_text(&first[col("requests_batching")]), "[2, 1]");
    assert_eq!(
        cell_text(&first[col("request_batching_frequencies")]),
        "{1: 3}"
    );
    assert_eq!(first[col("client_saturated")], Data::Bool(false));
    assert_eq!(cell_text(&first[col("outcome")]), "partial");
    let second = &xlsx_rows[2];
    assert_eq!(second[col("qps")], Data::Float(0.5));
    assert_eq!(cell_text(&second[col("qps_distribution")]), "exponential");
    assert_eq!(second[col("num_concurrent_requests")], Data::Empty);
    assert_eq!(second[col("server_ttft_s_p50")], Data::Empty);
    assert_eq!(cell_text(&second[col("outcome")]), "all_failed");
    assert_eq!(second[col("num_requests_not_sent")], Data::Float(2.0));
    assert_eq!(cell_text(&second[col("requests_grouping")]), "[]");

    // csv
    let mut reader = csv::Reader::from_path(&paths.csv).unwrap();
    let csv_header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(csv_header, expected_header());
    let csv_rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(csv_rows.len(), 2);

    // json
    let json = fs::read_to_string(&paths.json).unwrap();
    assert_strict_json(&json);
    let json_rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(json_rows.len(), 2);
    let first_object = json.split("\n    },").next().unwrap();
    assert_eq!(
        ordered_keys(&format!("{}}}", &first_object[json.find('{').unwrap()..])),
        expected_header()
    );
    assert_eq!(json_rows[0]["requests_grouping"], serde_json::json!([2, 1]));
    assert_eq!(
        json_rows[0]["error_code_frequency"],
        serde_json::json!({"503": 1})
    );
    assert_eq!(
        json_rows[0]["request_batching_frequencies"],
        serde_json::json!({"1": 3})
    );

    // The three formats agree cell by cell.
    for (i, xlsx_row) in xlsx_rows[1..].iter().enumerate() {
        for (c, name) in expected_header().iter().enumerate() {
            let csv_cell = &csv_rows[i][c];
            let json_cell = &json_rows[i][*name];
            match &xlsx_row[c + 1] {
                Data::Empty => {
                    assert_eq!(csv_cell, "", "{name}");
                    assert!(json_cell.is_null(), "{name}: {json_cell}");
                }
                Data::Float(x) => {
                    assert_eq!(csv_cell.parse::<f64>().unwrap(), *x, "{name}");
                    assert_eq!(json_cell.as_f64(), Some(*x), "{name}");
                }
                Data::Bool(b) => {
                    assert_eq!(csv_cell, if *b { "True" } else { "False" });
                    assert_eq!(json_cell.as_bool(), Some(*b));
                }
                Data::String(s) => {
                    assert_eq!(csv_cell, s, "{name}");
                    match json_cell {
                        serde_json::Value::String(j) => assert_eq!(j, s, "{name}"),
                        // Lists and dicts: the Python text is a rendering of the JSON value,
                        // with integer keys bare in Python where JSON quotes them.
                        structured => {
                            let json_text = structured.to_string();
                            let expected = if *name == "request_batching_frequencies" {
                                unquote_int_keys(&json_text)
                            } else {
                                json_text
                            };
                            assert_eq!(s.replace('\'', "\"").replace(' ', ""), expected, "{name}");
                        }
                    }
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
}

#[test]
fn the_kits_optional_columns_appear_only_with_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut without = ok(0, 100, 0.1);
    without.server.as_mut().unwrap().acceptance_rate = None;
    let plain = finish_row(0, concurrency_row("m", 1, 1), &[without], 0);
    let mut table = ConsolidatedTable::new("plain");
    table.insert(&plain.summary);
    let header = table.header();
    for absent in [
        "acceptance_rate_min",
        "acceptance_rate_p50",
        "acceptance_rate_max",
        "qps",
        "qps_distribution",
        "multimodal_img_size",
    ] {
        assert!(
            !header.iter().any(|h| h == absent),
            "{absent} in {header:?}"
        );
    }
    // Columns the kit always writes stay, empty or not; so do coebench's.
    for present in [
        "num_concurrent_requests",
        "switching_time",
        "uuid",
        "requests_grouping",
    ] {
        assert!(header.iter().any(|h| h == present), "{present} missing");
    }
    // A row with the data brings the columns back, in the kit's order.
    let with = finish_row(
        1,
        rate_row("m", 1.0, Some(ImageSize::Small)),
        &[ok(0, 100, 0.1)],
        0,
    );
    table.insert(&with.summary);
    let header = table.header();
    let kit: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .take_while(|h| *h != "row_index")
        .collect();
    assert_eq!(kit, KIT_CONSOLIDATED_COLUMNS);
    let paths = table.write(tmp.path()).unwrap();
    let mut workbook: Xlsx<_> = open_workbook(&paths.xlsx).unwrap();
    let range = workbook.worksheet_range("Sheet1").unwrap();
    let first_row: Vec<String> = range.rows().next().unwrap().iter().map(cell_text).collect();
    assert_eq!(first_row[1..], header[..]);
}

#[test]
fn the_consolidated_names_follow_the_option_and_metadata_gets_columns() {
    use coebench_plan::ConsolidatedFileNames;
    let rows = sample_rows();
    let metadata: std::collections::BTreeMap<String, String> = [("team", "infra"), ("build", "7")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    for (names, expected) in [
        (
            ConsolidatedFileNames::Seed,
            vec![
                "consolidated_results_r.csv",
                "consolidated_results_r.json",
                "consolidated_results_r.xlsx",
            ],
        ),
        (
            ConsolidatedFileNames::Kit,
            vec!["r.csv", "r.json", "r.xlsx"],
        ),
        (
            ConsolidatedFileNames::Both,
            vec![
                "consolidated_results_r.csv",
                "consolidated_results_r.json",
                "consolidated_results_r.xlsx",
                "r.xlsx",
            ],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut table = ConsolidatedTable::new("r")
            .named(names)
            .with_metadata(metadata.clone());
        for row in &rows {
            table.insert(row);
        }
        let paths = table.write(tmp.path()).unwrap();
        assert_only_files(
            tmp.path(),
            &expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        if let Some(kit) = &paths.kit_xlsx {
            assert_eq!(fs::read(kit).unwrap(), fs::read(&paths.xlsx).unwrap());
        }
        let json: Vec<serde_json::Value> =
            serde_json::from_str(&fs::read_to_string(&paths.json).unwrap()).unwrap();
        assert_eq!(json[1]["metadata_team"], "infra");
        assert_eq!(json[0]["metadata_build"], "7");
        let header = table.header();
        assert_eq!(
            header[header.len() - 2..],
            ["metadata_build", "metadata_team"]
        );
    }
}

/// `{"1":3}` -> `{1:3}`: Python writes integer keys bare, JSON quotes every key.
fn unquote_int_keys(json: &str) -> String {
    let mut out = String::new();
    let mut rest = json;
    while let Some(start) = rest.find('"') {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let end = after[1..].find('"').map_or(after.len(), |e| e + 2);
        let quoted = &after[..end];
        let inner = &quoted[1..quoted.len() - 1];
        if inner.chars().all(|c| c.is_ascii_digit()) && !inner.is_empty() {
            out.push_str(inner);
        } else {
            out.push_str(quoted);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_row_that_did_not_run_has_a_table_row_without_files() {
    let tmp = tempfile::tempdir().unwrap();
    let row = concurrency_row("m", 1, 8);
    let names = coebench_runner::output::naming::row_names(4, &row);
    let skipped = RowSummary::not_run(4, &row, "run-2", names, base_wall());
    assert_eq!(skipped.outcome, RowOutcome::NotRun);
    let mut table = ConsolidatedTable::new("run-2");
    table.insert(&skipped);
    let paths = table.write(tmp.path()).unwrap();
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(paths.json).unwrap()).unwrap();
    assert_eq!(json[0]["outcome"], "not_run");
    assert_eq!(json[0]["num_requests_not_sent"], 8);
    assert!(json[0]["summary_file"].is_null());
}

#[test]
fn the_manifest_records_rows_and_never_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = EndpointSpec {
        api: ApiKind::Sambastudio,
        url: Some("https://key:secret@studio.example/api/v2/predict/generic/p/e?key=abc".into()),
        api_key_env: None,
        simulator: None,
        ca_certificate: None,
    };
    let mut manifest = RunManifest::new("run-3", base_wall(), &endpoint);
    let rows = sample_rows();
    manifest.set_row(&rows[1]);
    manifest.set_row(&rows[0]);
    manifest.set_row(&rows[1]);
    manifest.finish(
        base_wall(),
        ManifestExit {
            outcome: RunOutcome::Succeeded,
            code: 0,
            message: None,
            failed_rows: Vec::new(),
        },
    );
    let path = write_manifest(tmp.path(), &manifest).unwrap();
    assert_eq!(path, tmp.path().join("run.json"));
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("secret") && !text.contains("abc"), "{text}");
    assert_strict_json(&text);
    let back: RunManifest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, manifest);
    assert_eq!(back.rows.len(), 2);
    assert_eq!(back.rows[0].row_index, 0);
    assert_eq!(back.rows[1].outcome, RowOutcome::AllFailed);
    assert_eq!(
        back.rows[0].summary_file.as_deref(),
        Some(rows[0].summary_file().as_str())
    );
    assert_eq!(
        back.endpoint.url.as_deref(),
        Some("https://studio.example/api/v2/predict/generic/p/e")
    );
}
