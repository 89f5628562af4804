//! Schema tests: the committed CRD files match the types, and the CEL rules accept and reject
//! what they should (evaluated client-side with kube's `cel` feature).

use super::*;
use coebench_plan::{ApiKind, Row, RunOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::json;

#[test]
fn committed_crds_match_the_types() {
    let committed = [
        (
            "coebenchmarks.yaml",
            include_str!("../../crds/coebenchmarks.yaml"),
        ),
        (
            "coebenchmarkruns.yaml",
            include_str!("../../crds/coebenchmarkruns.yaml"),
        ),
    ];
    for ((file, generated), (committed_file, text)) in crd_files().into_iter().zip(committed) {
        assert_eq!(file, committed_file);
        assert!(
            generated == text,
            "crds/{file} is stale: run `cargo run --bin crdgen` and commit the result"
        );
    }
}

#[test]
fn the_crd_files_parse_as_crds_with_the_printer_columns() {
    for ((_, yaml), (kind, short, columns)) in crd_files().into_iter().zip([
        (
            "CoeBenchmark",
            "coeb",
            vec![
                "Phase", "Last Run", "Rows", "P50 TTFT", "Schedule", "Next", "Suspend", "Last",
                "Age",
            ],
        ),
        (
            "CoeBenchmarkRun",
            "coebr",
            vec!["Phase", "Benchmark", "Rows", "P50 TTFT", "Started", "Age"],
        ),
    ]) {
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let names: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for column in columns {
            assert!(
                names.contains(&column),
                "{kind} lacks column {column}: {names:?}"
            );
        }
    }
}

fn row() -> Row {
    serde_json::from_value(json!({
        "model": "Meta-Llama-3.3-70B-Instruct", "inputTokens": 100, "outputTokens": 10,
        "numRequests": 4, "concurrency": 2
    }))
    .unwrap()
}

fn benchmark(spec: serde_json::Value) -> CoeBenchmark {
    let mut full = json!({
        "apiVersion": "coebench.dev/v1alpha1",
        "kind": "CoeBenchmark",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "endpoint": {"api": "sncloud", "apiKeySecretRef": {"name": "k", "key": "apiKey"}},
            "rows": [row()],
        }
    });
    let spec_obj = full["spec"].as_object_mut().unwrap();
    for (k, v) in spec.as_object().unwrap() {
        if v.is_null() {
            spec_obj.remove(k);
        } else {
            spec_obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(full).unwrap()
}

fn rejected(b: &CoeBenchmark, needle: &str) {
    let err = b.validate_cel().expect_err("should be rejected");
    assert!(
        err.to_string().contains(needle),
        "expected {needle:?} in {err}"
    );
}

#[test]
fn a_plain_benchmark_passes_the_rules() {
    benchmark(json!({})).validate_cel().unwrap();
    benchmark(json!({
        "rows": null,
        "rowsFrom": {"configMapKeyRef": {"name": "cm", "key": "model_configs.csv"}}
    }))
    .validate_cel()
    .unwrap();
    benchmark(json!({"endpoint": {"api": "simulator"}}))
        .validate_cel()
        .unwrap();
}

#[test]
fn exactly_one_of_rows_and_rows_from() {
    rejected(
        &benchmark(json!({"rowsFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}})),
        "exactly one of rows and rowsFrom",
    );
    rejected(
        &benchmark(json!({"rows": null})),
        "exactly one of rows and rowsFrom",
    );
}

#[test]
fn each_row_has_exactly_one_load_and_a_positive_qps() {
    let mut both = row();
    both.qps = Some(1.0);
    rejected(
        &benchmark(json!({"rows": [both]})),
        "exactly one of concurrency and qps",
    );
    let mut neither = row();
    neither.concurrency = None;
    rejected(
        &benchmark(json!({"rows": [neither]})),
        "exactly one of concurrency and qps",
    );
    let mut zero = row();
    zero.concurrency = None;
    zero.qps = Some(0.0);
    rejected(&benchmark(json!({"rows": [zero]})), "qps must be above 0");
    let mut fits = row();
    fits.max_sequence_length = Some(50);
    rejected(&benchmark(json!({"rows": [fits]})), "maxSequenceLength");
}

#[test]
fn endpoints_need_their_key_and_url() {
    rejected(
        &benchmark(json!({"endpoint": {"api": "sncloud"}})),
        "apiKeySecretRef is required",
    );
    rejected(
        &benchmark(json!({"endpoint": {"api": "openai"}})),
        "endpoint.url is required",
    );
    rejected(
        &benchmark(json!({"endpoint": {"api": "openai", "url": "vllm:8000"}})),
        "must start with http",
    );
}

#[test]
fn paths_env_and_names_are_checked() {
    rejected(
        &benchmark(
            json!({"results": {"persistentVolumeClaim": {"claimName": "c"}, "subPath": "../x"}}),
        ),
        "relative path",
    );
    rejected(
        &benchmark(json!({"runner": {"env": [{"name": "COEBENCH_API_KEY", "value": "x"}]}})),
        "COEBENCH_API_KEY",
    );
    let mut long = benchmark(json!({}));
    long.metadata.name = Some("b".repeat(MAX_BENCHMARK_NAME + 1));
    rejected(&long, "at most 52 characters");
}

fn run() -> CoeBenchmarkRun {
    let mut run = CoeBenchmarkRun::new(
        "bench-1",
        CoeBenchmarkRunSpec {
            benchmark: Some("bench".into()),
            trigger: RunTrigger::default(),
            endpoint: Endpoint {
                api: ApiKind::Simulator,
                url: None,
                api_key_secret_ref: None,
                ca_certificate: None,
            },
            rows: vec![row()],
            options: RunOptions::default(),
            runner: RunnerSpec::default(),
            results: None,
            ttl_seconds_after_finished: None,
            workers: None,
        },
    );
    run.metadata.namespace = Some("default".into());
    run
}

#[test]
fn a_runs_spec_is_immutable() {
    let old = run();
    old.validate_cel().unwrap();
    old.validate_cel_update(&old).unwrap();
    let mut changed = old.clone();
    changed.spec.rows[0].num_requests = 99;
    let err = changed.validate_cel_update(&old).unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // Status changes are not spec changes.
    let mut with_status = old.clone();
    with_status.status = Some(CoeBenchmarkRunStatus {
        phase: Some(RunPhase::Running),
        ..Default::default()
    });
    with_status.validate_cel_update(&old).unwrap();
}

#[test]
fn the_nightly_example_is_a_valid_scheduled_benchmark() {
    let mut bench: CoeBenchmark =
        serde_saphyr::from_str(include_str!("../../examples/benchmark-nightly.yaml")).unwrap();
    bench.metadata.namespace = Some("default".into());
    bench.validate_cel().unwrap();
    let schedule = crate::schedule::Schedule::parse(
        bench.spec.schedule.as_deref().unwrap(),
        bench.spec.time_zone.as_deref(),
    )
    .unwrap();
    assert_eq!(schedule.time_zone(), "America/New_York");
    assert_eq!(bench.spec.endpoint.api, ApiKind::Simulator);
}

#[test]
fn a_rows_workers_fit_in_the_benchmarks() {
    let mut two = row();
    two.workers = Some(2);
    benchmark(json!({"workers": 4, "rows": [two.clone()]}))
        .validate_cel()
        .unwrap();
    benchmark(json!({"workers": 2, "rows": [two.clone()]}))
        .validate_cel()
        .unwrap();
    rejected(
        &benchmark(json!({"rows": [two.clone()]})),
        "at most spec.workers",
    );
    rejected(
        &benchmark(json!({"workers": 1, "rows": [two.clone()]})),
        "at most spec.workers",
    );
    let mut run = run();
    run.spec.rows = vec![two];
    let err = run
        .validate_cel()
        .expect_err("a row above the run's workers");
    assert!(err.to_string().contains("at most spec.workers"), "{err}");
    run.spec.workers = Some(3);
    run.validate_cel().unwrap();
}

#[test]
fn a_ca_certificate_names_exactly_one_config_map_or_secret_key() {
    let openai = |ca: serde_json::Value| {
        benchmark(json!({"endpoint": {
            "api": "openai", "url": "https://vllm.internal/v1", "caCertificate": ca
        }}))
    };
    let config_map = json!({"name": "corp-ca", "key": "ca.crt"});
    let secret = json!({"name": "vllm-tls", "key": "ca.crt"});
    openai(json!({"configMapKeyRef": config_map.clone()}))
        .validate_cel()
        .unwrap();
    openai(json!({"secretKeyRef": secret.clone()}))
        .validate_cel()
        .unwrap();
    rejected(
        &openai(json!({"configMapKeyRef": config_map, "secretKeyRef": secret})),
        "exactly one of configMapKeyRef and secretKeyRef",
    );
    rejected(
        &openai(json!({})),
        "exactly one of configMapKeyRef and secretKeyRef",
    );
}

#[test]
fn the_simulator_takes_no_ca_certificate() {
    rejected(
        &benchmark(json!({"endpoint": {
            "api": "simulator",
            "caCertificate": {"configMapKeyRef": {"name": "corp-ca", "key": "ca.crt"}}
        }})),
        "endpoint.caCertificate is not allowed with api simulator",
    );
    let mut run = run();
    run.spec.endpoint.ca_certificate = Some(CaCertificateRef {
        config_map_key_ref: None,
        secret_key_ref: Some(SecretKeyRef {
            name: "vllm-tls".into(),
            key: "ca.crt".into(),
        }),
    });
    let err = run
        .validate_cel()
        .expect_err("a simulator run with a CA certificate");
    assert!(
        err.to_string().contains("not allowed with api simulator"),
        "{err}"
    );
    run.spec.endpoint.api = ApiKind::Openai;
    run.spec.endpoint.url = Some("https://vllm.internal/v1".into());
    run.validate_cel().unwrap();
}
