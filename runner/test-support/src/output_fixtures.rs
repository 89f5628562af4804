//! Fixtures shared by the output tests: synthetic measurements built from millisecond offsets,
//! a predictable token counter, and a reader of JSON key order.

use std::fmt;
use std::time::{Duration, Instant};

use coebench_plan::{ImageSize, QpsDistribution, Row};
use coebench_runner::client::measurement::{
    ErrorKind, Measurement, RequestError, ServerMetrics, TokenEvent,
};
use coebench_runner::statistics::record::{RequestContext, RequestRecord};
use coebench_runner::statistics::summary::{RowExecution, RowResult};
use coebench_support::tokenizer::TokenCounter;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// Counts whitespace-separated words.
pub struct Words;

impl TokenCounter for Words {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

/// A request described by millisecond offsets from the row start.
#[derive(Clone, Default)]
pub struct Req {
    /// When it was sent.
    pub start_ms: u64,
    /// Token events: arrival and the text they carried.
    pub events: Vec<(u64, &'static str)>,
    /// When the response ended.
    pub end_ms: u64,
    /// Server usage.
    pub server: Option<ServerMetrics>,
    /// Failure.
    pub error: Option<ErrorKind>,
}

/// The wall-clock time of the row start: 2023-11-14T22:13:20Z.
pub fn base_wall() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The measurement of `req` in a row that started at `base`.
pub fn measurement(base: Instant, req: &Req) -> Measurement {
    let mut text = String::new();
    let token_events = req
        .events
        .iter()
        .map(|&(at, chunk)| {
            text.push_str(chunk);
            TokenEvent {
                at: base + ms(at),
                text_end: text.len() as u32,
            }
        })
        .collect();
    let start = base + ms(req.start_ms);
    Measurement {
        start,
        start_wall: base_wall() + ms(req.start_ms),
        headers_at: Some(start + ms(5)),
        first_event_at: Some(start + ms(8)),
        token_events,
        end: base + ms(req.end_ms),
        end_wall: base_wall() + ms(req.end_ms),
        generated_text: text,
        server: req.server.clone(),
        stop_reason: req.error.is_none().then(|| "length".to_string()),
        error: req.error.map(|kind| RequestError {
            kind,
            message: format!("failed with {}", kind.code()),
        }),
        stale_connection_retry: false,
    }
}

/// The record of `req` as request `idx`.
pub fn record(base: Instant, idx: u32, req: &Req) -> RequestRecord {
    let ctx = RequestContext {
        request_idx: idx,
        request_id: format!("req-{idx}"),
        model: "Meta-Llama-3.3-70B-Instruct".into(),
        prompt_name: "default".into(),
        prompt_tokens: 18,
        intended_send: None,
        max_tokens: 3,
    };
    RequestRecord::from_measurement(&ctx, &measurement(base, req), &Words, base)
}

/// Server usage with TTFT `ttft_s`.
pub fn usage(ttft_s: f64, output: u64) -> ServerMetrics {
    ServerMetrics {
        input_tokens: Some(20),
        output_tokens: Some(output),
        total_tokens: Some(20 + output),
        ttft_s: Some(ttft_s),
        end_to_end_latency_s: Some(ttft_s + 0.1),
        output_tokens_per_s: Some(50.0),
        total_tokens_per_s: None,
        output_tokens_after_first_per_s_first_ten: Some(55.0),
        batch_size_used: Some(1),
        acceptance_rate: Some(2.5),
        cached_input_tokens: None,
        impossible_values: 0,
    }
}

/// A successful request sent at `start_ms` with three one-word chunks.
pub fn ok(start_ms: u64, ttft_ms: u64, ttft_s: f64) -> Req {
    let first = start_ms + ttft_ms;
    Req {
        start_ms,
        events: vec![
            (first, "alpha "),
            (first + 20, "beta "),
            (first + 40, "gamma "),
        ],
        end_ms: first + 60,
        server: Some(usage(ttft_s, 3)),
        error: None,
    }
}

/// A request that failed with `kind` at `end_ms`.
pub fn failed(start_ms: u64, end_ms: u64, kind: ErrorKind) -> Req {
    Req {
        start_ms,
        end_ms,
        error: Some(kind),
        ..Req::default()
    }
}

/// A closed-loop row.
pub fn concurrency_row(model: &str, concurrency: u32, num_requests: u32) -> Row {
    Row {
        model: model.into(),
        input_tokens: 1000,
        output_tokens: 100,
        num_requests,
        concurrency: Some(concurrency),
        qps: None,
        qps_distribution: None,
        image_size: None,
        max_sequence_length: None,
        ignore_eos: None,
        min_tokens: None,
        sampling_params: Default::default(),
        dataset: None,
        workers: None,
        objectives: None,
    }
}

/// An open-loop row.
pub fn rate_row(model: &str, qps: f64, image: Option<ImageSize>) -> Row {
    Row {
        model: model.into(),
        input_tokens: 500,
        output_tokens: 50,
        num_requests: 4,
        concurrency: None,
        qps: Some(qps),
        qps_distribution: Some(QpsDistribution::Exponential),
        image_size: image,
        max_sequence_length: None,
        ignore_eos: None,
        min_tokens: None,
        sampling_params: Default::default(),
        dataset: None,
        workers: None,
        objectives: None,
    }
}

/// Runs `reqs` as row `row_index` and summarises it.
pub fn finish_row(row_index: usize, row: Row, reqs: &[Req], not_sent: u32) -> RowResult {
    let base = Instant::now();
    let names = coebench_runner::output::naming::row_names(row_index, &row);
    let mut exec = RowExecution::new(row_index, row, "run-1", names, base, base_wall());
    let records: Vec<RequestRecord> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| record(base, i as u32, r))
        .collect();
    // The spool lives as long as the result; its file is removed with it.
    let spools = std::env::temp_dir().join("coebench-test-spools");
    exec.spool_records(&spools, &records).unwrap();
    exec.ended = base + ms(reqs.iter().map(|r| r.end_ms).max().unwrap_or(0) + 5_000);
    exec.not_sent = not_sent;
    exec.finish()
}

/// The keys of a JSON object, in the order they appear.
pub fn ordered_keys(json: &str) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Keys).unwrap()
}

/// Panics if `json` holds NaN or infinity in any spelling, or is not strict JSON.
pub fn assert_strict_json(json: &str) {
    for bad in ["NaN", "Infinity", "nan", "inf"] {
        assert!(
            !json.contains(&format!(": {bad}")) && !json.contains(&format!(":{bad}")),
            "{bad} in {json}"
        );
    }
    serde_json::from_str::<serde_json::Value>(json).expect("strict JSON");
}
