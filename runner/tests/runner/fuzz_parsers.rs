//! Seeded mutation fuzzing (stable Rust, no cargo-fuzz) of everything that reads outside input:
//! the SSE parser, the chat and generic stream decoding behind a real client over loopback,
//! the model-configs CSV reader, the kit config and the plan parsers.
//!
//! Each target mutates the committed corpus in `tests/fuzz_corpus/<target>/` (bit flips,
//! inserted and deleted bytes, repeated ranges, splices between seeds, tokens that have hurt
//! before such as `NaN`, `1e308`, `-1`, a BOM, CR LF) and asserts the target returns, never
//! panics, and holds its invariants (SSE events do not depend on how the bytes were split into
//! frames; a plan that parses and validates has every number in its range). An input that
//! fails is written to `target/fuzz-failures/` to be added to the corpus once fixed.
//!
//! The normal test run does a short bounded pass (a fixed seed, `COEBENCH_FUZZ_ITERATIONS`,
//! default 20,000 per target). A longer run, with a seed of its choice:
//!
//! ```text
//! COEBENCH_FUZZ_SECONDS=300 COEBENCH_FUZZ_SEED=$RANDOM \
//!   cargo nextest run -p coebench-runner --release --test fuzz_parsers --no-capture
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coebench_plan::input::kit_config::parse_kit_config;
use coebench_plan::input::model_configs::parse_model_configs_csv;
use coebench_plan::input::plan_file::parse_plan;
use coebench_plan::input::ranges;
use coebench_plan::input::validate::{UnknownCatalog, validate_plan};
use coebench_plan::{ApiKind, Plan};
use coebench_runner::client::sse::{SseError, SseItem, SseParser};
use coebench_runner::client::{ClientOptions, EndpointClient, RequestSpec};
use coebench_runner::credentials::{ApiKey, ResolvedEndpoint};
use coebench_test_support::hostile_server::{self, HostileServer, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tokens inserted by the mutator: numbers, escapes and separators that broke parsers before.
const DICTIONARY: &[&[u8]] = &[
    b"NaN",
    b"-Infinity",
    b"inf",
    b"1e308",
    b"1e-300",
    b"-1",
    b"0",
    b"4294967296",
    b"18446744073709551616",
    b"5e-324",
    b"\xef\xbb\xbf",
    b"\r\n",
    b"\n\n",
    b"\r",
    b"data:",
    b"data: [DONE]",
    b"event: error\n",
    b": comment\n",
    b"retry: 99999999999999999999\n",
    b"\"",
    b"\\u002d",
    b"\\ud800",
    b",",
    b",,,,",
    b"{",
    b"}",
    b"[",
    b"]",
    b": ",
    b"~",
    b"- ",
    b"&anchor ",
    b"*anchor",
    b"!!binary ",
    b"\t",
    b"\xff\xfe",
    b"\xf0\x9f\x98",
    b"\"usage\":{\"time_to_first_token\":-1}",
    b"\"finish_reason\":\"stop\"",
    b"\"is_last_response\":true",
];

/// How long each target runs.
enum Budget {
    Iterations(u64),
    Time(Duration),
}

impl Budget {
    fn from_env() -> Budget {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        match var("COEBENCH_FUZZ_SECONDS") {
            Some(seconds) => Budget::Time(Duration::from_secs(seconds)),
            None => Budget::Iterations(var("COEBENCH_FUZZ_ITERATIONS").unwrap_or(20_000)),
        }
    }

    fn go_on(&self, iteration: u64, started: Instant) -> bool {
        match self {
            Budget::Iterations(n) => iteration < *n,
            Budget::Time(limit) => started.elapsed() < *limit,
        }
    }
}

fn seed_from_env() -> u64 {
    std::env::var("COEBENCH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(13)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One mutation of a random seed: 1 to 8 edits.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=8) {
        let at = rng.random_range(0..=data.len());
        match rng.random_range(0..7) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.insert(at, rng.random()),
            2 => {
                let end = (at + rng.random_range(1..32)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.random_range(1..64)).min(data.len());
                let copy = data[at..end].to_vec();
                let to = rng.random_range(0..=data.len());
                data.splice(to..to, copy);
            }
            4 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                data.splice(at..at, token.iter().copied());
            }
            5 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                let end = (at + token.len()).min(data.len());
                data.splice(at..end, token.iter().copied());
            }
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                let end = (from + rng.random_range(1..128)).min(other.len());
                data.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    data
}

/// Runs `check` on mutations of `target`'s corpus within the budget; the first input that
/// panics is saved and fails the test.
fn fuzz(target: &str, check: impl FnMut(&[u8])) {
    fuzz_named(target, target, check);
}

/// [`fuzz`] of the `corpus` seeds, reported and saved as `target`.
fn fuzz_named(target: &str, corpus_name: &str, mut check: impl FnMut(&[u8])) {
    let seeds = corpus(corpus_name);
    for seed in &seeds {
        check(seed);
    }
    let seed = seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed ^ target.len() as u64);
    let budget = Budget::from_env();
    let started = Instant::now();
    let mut iteration = 0;
    while budget.go_on(iteration, started) {
        let input = mutate(&mut rng, &seeds);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{target}-seed{seed}-{iteration}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{target}: iteration {iteration} (seed {seed}) panicked; input saved to {}",
                path.display()
            );
        }
        iteration += 1;
    }
    eprintln!(
        "{target}: {iteration} inputs in {:.1}s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}

/// An event's name and data (`:` and nothing for a comment).
type Item = (Vec<u8>, Vec<u8>);

/// The events and comments `bytes` gives when fed in frames split at `cuts`.
fn sse_items(bytes: &[u8], cuts: &[usize]) -> Result<Vec<Item>, String> {
    let mut parser = SseParser::with_limit(64 * 1024);
    let mut items = Vec::new();
    let mut on = |item: SseItem<'_>| -> Result<(), SseError> {
        match item {
            SseItem::Event(e) => items.push((e.event.to_vec(), e.data.to_vec())),
            SseItem::Comment { .. } => items.push((b":".to_vec(), Vec::new())),
        }
        Ok(())
    };
    let now = Instant::now();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        parser
            .feed(&bytes[from..cut], now, &mut on)
            .map_err(|e| e.to_string())?;
        from = cut;
    }
    parser.finish(&mut on).map_err(|e| e.to_string())?;
    Ok(items)
}

#[test]
fn fuzz_the_sse_parser_and_its_frame_split_invariance() {
    let mut rng = StdRng::seed_from_u64(seed_from_env());
    fuzz("sse", |bytes| {
        let whole = sse_items(bytes, &[]);
        let mut cuts: Vec<usize> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..=bytes.len()))
            .collect();
        cuts.sort_unstable();
        let split = sse_items(bytes, &cuts);
        let byte_by_byte = sse_items(bytes, &(1..bytes.len()).collect::<Vec<_>>());
        // Size limits may trip at different points; what parses must parse the same.
        if let (Ok(a), Ok(b), Ok(c)) = (&whole, &split, &byte_by_byte) {
            assert_eq!(a, b, "split at {cuts:?}");
            assert_eq!(a, c, "byte by byte");
        }
    });
}

/// A client over loopback to a server that answers every request with the current body.
struct StreamRig {
    runtime: tokio::runtime::Runtime,
    body: Arc<Mutex<Vec<u8>>>,
    _server: HostileServer,
    chat: EndpointClient,
    generic: EndpointClient,
}

impl StreamRig {
    fn start() -> StreamRig {
        let body = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::clone(&body);
        let server = HostileServer::start(Arc::new(move |_: &hostile_server::Request| {
            let body = served.lock().unwrap().clone();
            let mut reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            reply.extend_from_slice(&body);
            Reply::Bytes(reply)
        }))
        .unwrap();
        let client = |api, url: String| {
            EndpointClient::new(
                ResolvedEndpoint {
                    api,
                    url,
                    api_key: Some(ApiKey::new("sk-fuzz-0123456789")),
                    ca_certificate: None,
                },
                ClientOptions::default(),
            )
            .unwrap()
        };
        StreamRig {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            chat: client(ApiKind::Openai, server.url("/v1")),
            generic: client(
                ApiKind::Sambastudio,
                server.url("/api/v2/predict/generic/p/e"),
            ),
            body,
            _server: server,
        }
    }

    /// Streams `bytes` to both clients; every outcome is a measurement, never a panic.
    fn stream(&self, bytes: &[u8]) {
        *self.body.lock().unwrap() = bytes.to_vec();
        for client in [&self.chat, &self.generic] {
            let request = client
                .prepare(&RequestSpec {
                    model: "m",
                    prompt: "hi",
                    image: None,
                    max_tokens: 4,
                    ignore_eos: None,
                    min_tokens: None,
                    sampling_params: None,
                })
                .unwrap();
            let m = self
                .runtime
                .block_on(client.send(&request, "fuzz", Duration::from_secs(10)));
            if let Some(error) = &m.error {
                assert!(!error.message.contains("sk-fuzz-0123456789"));
            }
            if let Some(server) = &m.server {
                for value in [server.ttft_s, server.end_to_end_latency_s]
                    .into_iter()
                    .flatten()
                {
                    assert!(value.is_finite() && value >= 0.0, "{server:?}");
                }
            }
        }
    }
}

#[test]
fn fuzz_stream_decoding_behind_a_real_client() {
    let rig = StreamRig::start();
    // Each input is two HTTP exchanges over loopback: a twentieth of the parser's budget.
    let budget = match Budget::from_env() {
        Budget::Iterations(n) => (n / 20).max(50),
        Budget::Time(_) => u64::MAX,
    };
    let mut done = 0;
    fuzz_named("stream", "sse", |bytes| {
        if done < budget {
            rig.stream(bytes);
            done += 1;
        }
    });
}

/// A plan that validates has every number in its documented range (so nothing downstream
/// converts an impossible value).
fn assert_in_range_when_valid(plan: &Plan) {
    if validate_plan(plan, "fuzz", &UnknownCatalog).is_err() {
        return;
    }
    let o = &plan.options;
    assert!(ranges::TIMEOUT_SECONDS.contains(o.timeout_seconds), "{o:?}");
    assert!(ranges::REQUEST_TIMEOUT_SECONDS.contains(o.request_timeout_seconds));
    assert!(ranges::TIME_DELAY_SECONDS.contains(o.time_delay_seconds));
    assert!(ranges::STOP_GRACE_SECONDS.contains(o.stop_grace_seconds));
    for row in &plan.rows {
        if let Some(qps) = row.qps {
            assert!(ranges::QPS.contains(qps), "{row:?}");
        }
        assert!(ranges::NUM_REQUESTS.contains(f64::from(row.num_requests)));
    }
}

#[test]
fn fuzz_the_model_configs_csv_reader() {
    fuzz("csv", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Err(errors) = parse_model_configs_csv(&text, "fuzz.csv") {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(!e.problem.is_empty(), "{e:?}");
            }
        }
    });
}

#[test]
fn fuzz_the_kit_config_reader() {
    let csv = String::from_utf8(corpus("csv")[0].clone()).unwrap();
    fuzz("config", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(kit) =
            parse_kit_config(&text, "fuzz.yaml", Path::new("/fuzz"), &|_| Ok(csv.clone()))
        {
            assert_in_range_when_valid(&kit.plan);
        }
    });
}

#[test]
fn fuzz_the_plan_parser() {
    fuzz("plan", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        for is_json in [false, true] {
            if let Ok(plan) = parse_plan(&text, "fuzz", is_json) {
                assert_in_range_when_valid(&plan);
            }
        }
    });
}
