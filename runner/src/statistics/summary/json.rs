//! The `*_summary.json` layout: the kit's keys in the kit's order (kit-reference 6.2), statistics
//! without data left out, then coebench's keys. Only serialisation lives here.
//!
//! Every value is a scalar, with the kit's types for the kit's keys, so the kit's notebooks can
//! build `pd.DataFrame(summary, index=[0])`: frequency maps and lists are written as Python's
//! `str()` text (`"{'503': 2}"`, `"[2, 1]"`, as the kit writes `error_code_frequency`), and the
//! minimum and maximum of the integer metrics (token counts) as text (`"1036"`), as the kit's
//! `json.dump(..., default=str)` writes numpy integers. The consolidated `.json` table holds the
//! same lists and maps as JSON arrays and objects.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{MetricStats, RowSummary};
use crate::statistics::python_text;
use crate::statistics::stats::{QUANTILES, round4};
use coebench_plan::{ImageSize, Load};

impl Serialize for RowSummary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("model", &self.model)?;
        match self.load {
            Load::Concurrency(c) => map.serialize_entry("num_concurrent_requests", &c)?,
            Load::Rate { qps, distribution } => {
                map.serialize_entry("qps", &qps)?;
                map.serialize_entry("qps_distribution", distribution.as_str())?;
            }
        }
        for m in &self.kit_stats {
            serialize_stats(&mut map, m)?;
        }
        map.serialize_entry("results_num_requests_started", &self.num_requests_started)?;
        map.serialize_entry("results_error_rate", &self.error_rate)?;
        map.serialize_entry("results_number_errors", &self.number_errors)?;
        map.serialize_entry(
            "results_error_code_frequency",
            &python_text::count_map(&self.error_code_frequency),
        )?;
        map.serialize_entry(
            "results_client_total_output_throughput",
            &self.client_total_output_throughput,
        )?;
        map.serialize_entry(
            "results_mean_output_throughput_token_per_s",
            &self.mean_output_throughput_token_per_s,
        )?;
        map.serialize_entry(
            "results_num_completed_requests",
            &self.num_completed_requests,
        )?;
        map.serialize_entry(
            "results_num_completed_requests_per_min",
            &self.num_completed_requests_per_min,
        )?;
        map.serialize_entry("num_input_tokens", &self.num_input_tokens)?;
        map.serialize_entry("num_output_tokens", &self.num_output_tokens)?;
        // The kit flattens its `additional_sampling_params` and merges the user's metadata
        // (text values) before `model_idx`.
        for (key, value) in flat_sampling_params(&self.sampling_params) {
            map.serialize_entry(&key, &value)?;
        }
        for (key, value) in &self.metadata {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("model_idx", &self.row_index)?;
        map.serialize_entry("timestamp", &self.timestamp)?;
        self.serialize_own(&mut map)?;
        map.end()
    }
}

impl RowSummary {
    /// coebench's keys, after the kit's.
    fn serialize_own<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        map.serialize_entry("run_name", &self.run_name)?;
        map.serialize_entry("row_uuid", &self.row_uuid.to_string())?;
        map.serialize_entry("outcome", self.outcome.as_str())?;
        map.serialize_entry("started_at", &self.started_at)?;
        map.serialize_entry(
            "multimodal_img_size",
            &self.image_size.map(ImageSize::as_str),
        )?;
        map.serialize_entry("results_num_requests_planned", &self.num_requests)?;
        map.serialize_entry("results_num_requests_not_sent", &self.num_requests_not_sent)?;
        map.serialize_entry(
            "results_num_requests_with_impossible_server_metrics",
            &self.requests_with_impossible_server_metrics,
        )?;
        map.serialize_entry(
            "results_error_class_frequency",
            &python_text::count_map(&self.error_class_frequency),
        )?;
        map.serialize_entry("results_row_duration_s", &round4(self.row_duration_s))?;
        let s = &self.switching;
        map.serialize_entry("results_switching_time_s", &s.switching_time_s)?;
        map.serialize_entry("results_switching_time_source", &s.source)?;
        map.serialize_entry("results_switching_time_request_idx", &s.first_request_idx)?;
        map.serialize_entry("results_switching_time_first_ttft_s", &s.first_ttft_s)?;
        let others_mean = s.others_mean_s.map(round4);
        map.serialize_entry("results_switching_time_others_mean_s", &others_mean)?;
        let others_std = s.others_stddev_s.map(round4);
        map.serialize_entry("results_switching_time_others_stddev_s", &others_std)?;
        map.serialize_entry("results_switching_time_others_count", &s.others_count)?;
        map.serialize_entry(
            "results_switching_time_first_request_cache_colder",
            &s.first_request_cache_colder,
        )?;
        let b = &self.batching;
        map.serialize_entry(
            "results_requests_grouping",
            &python_text::int_list(&b.requests_grouping),
        )?;
        map.serialize_entry(
            "results_requests_batching",
            &python_text::int_list(&b.requests_batching),
        )?;
        map.serialize_entry(
            "results_request_batching_frequencies",
            &python_text::int_map(&b.request_batching_frequencies),
        )?;
        map.serialize_entry(
            "results_representative_batch_size",
            &b.representative_batch_size,
        )?;
        map.serialize_entry("results_batching_source", &b.source)?;
        for m in &self.extra_stats {
            serialize_stats(map, m)?;
        }
        let a = &self.load_accuracy;
        map.serialize_entry("results_target_qps", &a.target_qps)?;
        map.serialize_entry("results_achieved_qps", &a.achieved_qps)?;
        map.serialize_entry("results_target_concurrency", &a.target_concurrency)?;
        map.serialize_entry("results_mean_in_flight", &a.mean_in_flight)?;
        let h = &self.client_health;
        let lag = h.event_loop_lag_p99_s.filter(|v| v.is_finite());
        map.serialize_entry("results_client_event_loop_lag_p99_s", &lag)?;
        let cpu = h.cpu_utilization.filter(|v| v.is_finite());
        map.serialize_entry("results_client_cpu_utilization", &cpu)?;
        map.serialize_entry("results_client_saturated", &h.saturated)?;
        let c = &self.server_checks;
        map.serialize_entry(
            "results_stale_connection_retries",
            &c.stale_connection_retries,
        )?;
        map.serialize_entry("results_stopped_early", &c.stopped_early)?;
        map.serialize_entry("results_stopped_early_share", &c.stopped_early_share)?;
        let g = self.goodput.as_ref();
        map.serialize_entry("results_goodput", &g.and_then(|g| g.share))?;
        map.serialize_entry("results_goodput_requests_met", &g.map(|g| g.met))?;
        map.serialize_entry("results_goodput_requests_counted", &g.map(|g| g.counted))?;
        let p = self.percentile_objectives.as_ref();
        map.serialize_entry("results_percentile_objectives_met", &p.map(|p| p.met))?;
        map.serialize_entry("results_percentile_objectives", &p.map(|p| &p.checks))?;
        map.serialize_entry("results_server_timings", c.server_timings.as_str())?;
        map.serialize_entry("results_cached_input_share", &c.cached_input_share)?;
        let t = &c.tokenizer;
        map.serialize_entry("results_template_overhead_tokens", &t.template_overhead)?;
        map.serialize_entry(
            "results_server_prompt_tokens_difference",
            &t.median_difference,
        )?;
        map.serialize_entry("results_tokenizer_mismatch", &t.mismatch)?;
        map.serialize_entry(
            "individual_responses_file",
            &self.individual_responses_file(),
        )?;
        map.serialize_entry("summary_file", &self.summary_file())?;
        map.serialize_entry("response_texts_file", &self.response_texts_file)
    }
}

/// `additional_sampling_params_<key>` for each sampling parameter, objects flattened with `_`
/// as the kit's `flatten_dict` does; lists become their JSON text, so every value stays a
/// scalar (the kit would write a list, which its own notebook cannot read). Keys are unique
/// (a flattened `{"a": {"b": 1}}` and a parameter `a_b` give one key, the latter's value).
fn flat_sampling_params(
    params: &coebench_plan::SamplingParams,
) -> BTreeMap<String, serde_json::Value> {
    fn flatten(
        prefix: String,
        value: &serde_json::Value,
        out: &mut BTreeMap<String, serde_json::Value>,
    ) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    flatten(format!("{prefix}_{k}"), v, out);
                }
            }
            serde_json::Value::Array(_) => {
                out.insert(prefix, value.to_string().into());
            }
            scalar => {
                out.insert(prefix, scalar.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for (key, value) in params {
        flatten(format!("additional_sampling_params_{key}"), value, &mut out);
    }
    out
}

/// The kit's integer metrics: pandas keeps their minimum and maximum as numpy integers, which
/// the kit's JSON dump writes as text.
const INTEGER_KIT_METRICS: [&str; 4] = [
    "number_input_tokens",
    "number_output_tokens",
    "server_number_input_tokens",
    "server_number_output_tokens",
];

/// `results_<metric>_quantiles_p5` ... `_p99`, `_mean`, `_min`, `_max`, `_stddev`.
fn serialize_stats<M: SerializeMap>(map: &mut M, m: &MetricStats) -> Result<(), M::Error> {
    let prefix = format!("results_{}", m.metric);
    for ((_, suffix), value) in QUANTILES.iter().zip(m.stats.quantiles()) {
        map.serialize_entry(&format!("{prefix}_quantiles_{suffix}"), &value)?;
    }
    map.serialize_entry(&format!("{prefix}_mean"), &m.stats.mean)?;
    if INTEGER_KIT_METRICS.contains(&m.metric) {
        // Counts are whole numbers well inside f64's exact range.
        map.serialize_entry(&format!("{prefix}_min"), &format!("{}", m.stats.min as i64))?;
        map.serialize_entry(&format!("{prefix}_max"), &format!("{}", m.stats.max as i64))?;
    } else {
        map.serialize_entry(&format!("{prefix}_min"), &m.stats.min)?;
        map.serialize_entry(&format!("{prefix}_max"), &m.stats.max)?;
    }
    map.serialize_entry(&format!("{prefix}_stddev"), &m.stats.stddev)
}
