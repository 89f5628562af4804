//! The HTML report of a run: one self-contained file (inline CSS and SVG, no script, nothing
//! fetched when opened) with, per row, client and server latency distributions and tokens per
//! second; latency against load across a model's rows; a request timeline with switching
//! requests marked; switching times; batch sizes; the client's health; the run's inputs; and,
//! given a baseline, the comparison with it. Large runs stay small: each distribution is drawn
//! from at most [`MAX_CURVE_POINTS`] points and the timeline from at most
//! [`MAX_TIMELINE_BARS`] requests, as the page says.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::compare::{Comparison, Verdict};
use super::run_folder::{RowData, RunFolder};
use super::{quantile_of, sorted_finite};
use crate::output::OutputError;
use crate::output::atomic::write_atomic;
use crate::statistics::stats::quantile_sorted;

/// Most points of one distribution curve.
pub const MAX_CURVE_POINTS: usize = 200;
/// Most requests drawn on the timeline.
pub const MAX_TIMELINE_BARS: usize = 2000;

/// The ids of the sections every report has (`<section id="...">`), in page order; a report
/// against a baseline adds `comparison` before `inputs`.
pub const SECTIONS: [&str; 9] = [
    "rows",
    "health",
    "latency",
    "throughput",
    "scaling",
    "timeline",
    "switching",
    "batching",
    "inputs",
];

/// The report's file name in a run's folder.
pub const REPORT_FILE: &str = "report.html";

const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
];
const SWITCH_COLOUR: &str = "#d62728";

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #eee}\
.warn{background:#fff3cd;border:1px solid #e0c36b;padding:.5em 1em}.bad{color:#b00;font-weight:bold}\
.note{color:#666;font-size:.9em}pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:20em}";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(value: Option<f64>, digits: usize) -> String {
    value
        .filter(|v| v.is_finite())
        .map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// What the row asked for, briefly.
fn row_label(data: &RowData) -> String {
    let row = &data.row;
    let load = match (row.concurrency, row.qps) {
        (Some(c), _) => format!("concurrency {c}"),
        (None, Some(q)) => format!("{q} req/s"),
        (None, None) => String::new(),
    };
    format!(
        "#{} {} {}/{} {load}",
        data.index, row.model, row.input_tokens, row.output_tokens
    )
}

/// One curve of a chart: its name, colour and points.
struct Series<'a> {
    name: String,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart as inline SVG; axes from the data.
struct Chart<'a> {
    title: String,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<Series<'a>>,
    /// Draw markers at each point (few points) rather than a plain line.
    markers: bool,
}

const W: f64 = 520.0;
const H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;

/// Tick positions from `low` to `high` at a round step, and the decimals their labels need.
fn ticks(low: f64, high: f64) -> (Vec<f64>, usize) {
    let span = (high - low).max(f64::EPSILON);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let mut t = (low / step).ceil() * step;
    let mut out = Vec::new();
    while t <= high + step * 1e-9 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    (out, decimals)
}

impl<'a> Series<'a> {
    fn new(name: &str, colour: &'a str, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.to_string(),
            colour,
            points,
        }
    }
}

impl Chart<'_> {
    fn svg(&self, class: &str) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg class=\"chart {class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\"><title>{}</title>",
            esc(&self.title)
        );
        let _ = write!(
            out,
            "<text x=\"{LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>",
            esc(&self.title)
        );
        if x0 > x1 {
            let _ = write!(
                out,
                "<text x=\"{LEFT}\" y=\"{}\" font-size=\"12\">no data</text></svg>",
                H / 2.0
            );
            return out;
        }
        if (x1 - x0).abs() < f64::EPSILON {
            x0 -= 0.5;
            x1 += 0.5;
        }
        if (y1 - y0).abs() < f64::EPSILON {
            y1 = y0 + 1.0;
        }
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let _ = write!(
            out,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
        );
        let (xs, x_decimals) = ticks(x0, x1);
        for t in xs {
            let x = sx(t);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{t:.x_decimals$}</text>",
                TOP + ph,
                TOP + ph + 4.0,
                TOP + ph + 15.0,
            );
        }
        let (ys, y_decimals) = ticks(y0, y1);
        for t in ys {
            let y = sy(t);
            let _ = write!(
                out,
                "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{t:.y_decimals$}</text>",
                LEFT,
                LEFT + pw,
                LEFT - 4.0,
                y + 3.0,
            );
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text><text x=\"12\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">{}</text>",
            LEFT + pw / 2.0,
            H - 8.0,
            esc(self.x_label),
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(self.y_label)
        );
        for (
            i,
            Series {
                name,
                colour,
                points: pts,
            },
        ) in self.series.iter().enumerate()
        {
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                out,
                "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\" points=\"{}\"/>",
                esc(name),
                path.join(" ")
            );
            if self.markers {
                for &(x, y) in pts {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                        sx(x),
                        sy(y)
                    );
                }
            }
            let ly = TOP + 12.0 + i as f64 * 16.0;
            let lx = LEFT + pw + 10.0;
            let _ = write!(
                out,
                "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"4\" fill=\"{colour}\"/><text x=\"{}\" y=\"{ly}\" font-size=\"11\">{}</text>",
                ly - 4.0,
                lx + 16.0,
                esc(name)
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// The empirical CDF of sorted `values` as at most [`MAX_CURVE_POINTS`] points.
fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let points = n.min(MAX_CURVE_POINTS);
    (0..points)
        .map(|i| {
            let level = if points == 1 {
                1.0
            } else {
                i as f64 / (points - 1) as f64
            };
            (quantile_sorted(values, level), level)
        })
        .collect()
}

/// Renders the report of `run`, with the comparison against a baseline when given.
pub fn render(run: &RunFolder, comparison: Option<&Comparison>) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let title = format!("coebench report: {}", run.run_name);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let outcome = run.exit["outcome"].as_str().unwrap_or("unknown");
    let _ = write!(
        html,
        "<h1>{}</h1><p>Outcome: <b id=\"outcome\">{}</b> · {} row(s) · endpoint <code>{}</code></p>",
        esc(&title),
        esc(outcome),
        run.rows.len(),
        esc(&run.inputs["endpoint"].to_string())
    );
    rows_section(&mut html, run);
    health_section(&mut html, run);
    latency_section(&mut html, run);
    throughput_section(&mut html, run);
    scaling_section(&mut html, run);
    timeline_section(&mut html, run);
    switching_section(&mut html, run);
    batching_section(&mut html, run);
    if let Some(comparison) = comparison {
        comparison_section(&mut html, comparison);
    }
    inputs_section(&mut html, run);
    html.push_str("</body></html>\n");
    html
}

/// Reads the run in `folder` and writes its report there as [`REPORT_FILE`].
pub fn write_report(
    run: &RunFolder,
    comparison: Option<&Comparison>,
    path: &Path,
) -> Result<(), OutputError> {
    write_atomic(path, render(run, comparison).as_bytes())
}

fn rows_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"rows\"><h2>Rows</h2><table class=\"rows\"><tr><th>row</th><th>completed</th><th>failed</th><th>client TTFT p50 (s)</th><th>server TTFT p50 (s)</th><th>e2e p50 (s)</th><th>e2e p99 (s)</th><th>tokens/s p50</th><th>switching (s)</th><th>goodput</th><th>client</th></tr>");
    for data in &run.rows {
        let s = &data.samples;
        let ttft = sorted_finite(s.ttft_s.iter().copied());
        let e2e = sorted_finite(s.e2e_s.iter().copied());
        let rate = sorted_finite(s.output_tokens_per_s.iter().copied());
        let server = sorted_finite(data.requests.iter().filter_map(|r| r.server_ttft_s));
        let client = match data.health.saturated {
            Some(true) => "<span class=\"bad\">saturated</span>",
            Some(false) => "ok",
            None => "–",
        };
        let _ = write!(
            html,
            "<tr class=\"row\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{client}</td></tr>",
            esc(&row_label(data)),
            s.ttft_s.len(),
            s.failed,
            num(quantile_of(&ttft, 0.5), 4),
            num(quantile_of(&server, 0.5), 4),
            num(quantile_of(&e2e, 0.5), 4),
            num(quantile_of(&e2e, 0.99), 4),
            num(quantile_of(&rate, 0.5), 1),
            num(data.health.switching_time_s, 4),
            data.health
                .goodput
                .map_or_else(|| "–".into(), |g| format!("{:.1}%", g * 100.0))
        );
    }
    html.push_str("</table></section>");
}

fn health_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"health\"><h2>Client health</h2>");
    let saturated: Vec<String> = run
        .rows
        .iter()
        .filter(|r| r.health.saturated == Some(true))
        .map(row_label)
        .collect();
    if saturated.is_empty() {
        html.push_str("<p>The client kept up with every row: its timings can be trusted.</p>");
    } else {
        let _ = write!(
            html,
            "<p class=\"warn\">The client could not keep up with {}: its latencies include the client's own delay. Lower the load per process or give the runner more CPU.</p>",
            esc(&saturated.join(", "))
        );
    }
    html.push_str("<table><tr><th>row</th><th>dispatch delay p99 (s)</th><th>event-loop lag p99 (s)</th><th>client CPU (cores)</th><th>achieved req/s</th><th>duration (s)</th></tr>");
    for data in &run.rows {
        let delay = sorted_finite(data.requests.iter().filter_map(|r| r.dispatch_delay_s));
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row_label(data)),
            num(quantile_of(&delay, 0.99), 5),
            num(data.health.event_loop_lag_p99_s, 5),
            num(data.health.cpu_utilization, 3),
            num(data.health.achieved_qps, 2),
            num(data.health.duration_s, 2)
        );
    }
    html.push_str("</table></section>");
}

fn latency_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"latency\"><h2>Latency distributions</h2><p class=\"note\">Cumulative share of successful requests at or below each latency, client-side and as the server reported it.</p><div class=\"charts\">");
    for data in run.rows.iter().filter(|r| !r.requests.is_empty()) {
        let ok = || data.requests.iter().filter(|r| !r.failed);
        let chart = Chart {
            title: row_label(data),
            x_label: "seconds",
            y_label: "share of requests",
            series: vec![
                Series::new(
                    "client TTFT",
                    PALETTE[0],
                    cdf(&sorted_finite(data.samples.ttft_s.iter().copied())),
                ),
                Series::new(
                    "server TTFT",
                    PALETTE[1],
                    cdf(&sorted_finite(ok().filter_map(|r| r.server_ttft_s))),
                ),
                Series::new(
                    "client e2e",
                    PALETTE[2],
                    cdf(&sorted_finite(data.samples.e2e_s.iter().copied())),
                ),
                Series::new(
                    "server e2e",
                    PALETTE[3],
                    cdf(&sorted_finite(ok().filter_map(|r| r.server_e2e_s))),
                ),
            ],
            markers: false,
        };
        html.push_str(&chart.svg("latency"));
    }
    html.push_str("</div></section>");
}

fn throughput_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"throughput\"><h2>Output tokens per second per request</h2><div class=\"charts\">");
    for data in run.rows.iter().filter(|r| !r.requests.is_empty()) {
        let chart = Chart {
            title: row_label(data),
            x_label: "output tokens per second",
            y_label: "share of requests",
            series: vec![Series::new(
                "client",
                PALETTE[2],
                cdf(&sorted_finite(
                    data.samples.output_tokens_per_s.iter().copied(),
                )),
            )],
            markers: false,
        };
        html.push_str(&chart.svg("throughput"));
    }
    html.push_str("</div></section>");
}

fn scaling_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"scaling\"><h2>Latency and throughput against load</h2>");
    // Rows of one model, shape and load kind, by load.
    let mut groups: BTreeMap<(String, u32, u32, bool), Vec<&RowData>> = BTreeMap::new();
    for data in run.rows.iter().filter(|r| !r.samples.e2e_s.is_empty()) {
        let row = &data.row;
        groups
            .entry((
                row.model.clone(),
                row.input_tokens,
                row.output_tokens,
                row.qps.is_some(),
            ))
            .or_default()
            .push(data);
    }
    let mut drawn = 0;
    html.push_str("<div class=\"charts\">");
    for ((model, input, output, open), rows) in &groups {
        let load = |d: &RowData| {
            d.row
                .qps
                .or(d.row.concurrency.map(f64::from))
                .unwrap_or(0.0)
        };
        let mut loads: Vec<f64> = rows.iter().map(|d| load(d)).collect();
        loads.sort_by(f64::total_cmp);
        loads.dedup();
        if loads.len() < 2 {
            continue;
        }
        let mut rows = rows.clone();
        rows.sort_by(|a, b| load(a).total_cmp(&load(b)));
        let at = |pick: &dyn Fn(&RowData) -> Option<f64>| -> Vec<(f64, f64)> {
            rows.iter()
                .filter_map(|d| pick(d).map(|v| (load(d), v)))
                .collect()
        };
        let x_label = if *open {
            "requests per second"
        } else {
            "concurrency"
        };
        let latency = Chart {
            title: format!("{model} {input}/{output}: latency"),
            x_label,
            y_label: "seconds (p50)",
            series: vec![
                Series::new(
                    "TTFT p50",
                    PALETTE[0],
                    at(&|d| quantile_of(&sorted_finite(d.samples.ttft_s.iter().copied()), 0.5)),
                ),
                Series::new(
                    "e2e p50",
                    PALETTE[2],
                    at(&|d| quantile_of(&sorted_finite(d.samples.e2e_s.iter().copied()), 0.5)),
                ),
            ],
            markers: true,
        };
        let throughput = Chart {
            title: format!("{model} {input}/{output}: tokens/s"),
            x_label,
            y_label: "tokens/s per request (p50)",
            series: vec![Series::new(
                "tokens/s p50",
                PALETTE[4],
                at(&|d| {
                    quantile_of(
                        &sorted_finite(d.samples.output_tokens_per_s.iter().copied()),
                        0.5,
                    )
                }),
            )],
            markers: true,
        };
        html.push_str(&latency.svg("scaling"));
        html.push_str(&throughput.svg("scaling"));
        drawn += 1;
    }
    html.push_str("</div>");
    if drawn == 0 {
        html.push_str(
            "<p class=\"note\">No model has rows of the same shape at two or more loads.</p>",
        );
    }
    html.push_str("</section>");
}

fn timeline_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"timeline\"><h2>Request timeline</h2>");
    let all: Vec<(usize, f64, f64, bool)> = run
        .rows
        .iter()
        .enumerate()
        .flat_map(|(i, data)| {
            data.requests.iter().filter_map(move |r| {
                Some((i, r.start_unix_s?, r.duration_s.unwrap_or(0.0), r.switched))
            })
        })
        .collect();
    if all.is_empty() {
        html.push_str("<p class=\"note\">No request has timestamps.</p></section>");
        return;
    }
    let stride = all.len().div_ceil(MAX_TIMELINE_BARS).max(1);
    let mut shown: Vec<&(usize, f64, f64, bool)> = all
        .iter()
        .enumerate()
        .filter(|(i, r)| i % stride == 0 || r.3)
        .map(|(_, r)| r)
        .collect();
    shown.sort_by(|a, b| a.1.total_cmp(&b.1));
    let start = shown.iter().map(|r| r.1).fold(f64::MAX, f64::min);
    let end = shown.iter().map(|r| r.1 + r.2).fold(f64::MIN, f64::max);
    let span = (end - start).max(1e-6);
    let (width, lane) = (1100.0, if shown.len() > 400 { 1.0 } else { 4.0 });
    let height = TOP + shown.len() as f64 * lane + BOTTOM;
    let _ = write!(
        html,
        "<p class=\"note\">One bar per request from send to end, coloured by row; switching requests (the server reported a model switch) in red with a marker. Showing {} of {} requests{}.</p>",
        shown.len(),
        all.len(),
        if stride > 1 {
            format!(" (every {stride}th, plus every switching request)")
        } else {
            String::new()
        }
    );
    let _ = write!(
        html,
        "<svg class=\"chart timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height:.0}\" viewBox=\"0 0 {width} {height:.0}\"><title>request timeline</title>"
    );
    let plot = width - LEFT - 20.0;
    let sx = |t: f64| LEFT + (t - start) / span * plot;
    let (ts, decimals) = ticks(0.0, span);
    for t in ts {
        let x = sx(start + t);
        let _ = write!(
            html,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">{t:.decimals$} s</text>",
            height - BOTTOM,
            height - BOTTOM + 14.0,
        );
    }
    for (lane_index, (row, at, duration, switched)) in shown.iter().enumerate() {
        let y = TOP + lane_index as f64 * lane;
        let colour = if *switched {
            SWITCH_COLOUR
        } else {
            PALETTE[row % PALETTE.len()]
        };
        let _ = write!(
            html,
            "<rect class=\"request{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{lane}\" fill=\"{colour}\"/>",
            if *switched { " switched" } else { "" },
            sx(*at),
            (duration / span * plot).max(0.5)
        );
        if *switched {
            let _ = write!(
                html,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{SWITCH_COLOUR}\"/>",
                sx(*at) - 4.0,
                y + lane / 2.0
            );
        }
    }
    html.push_str("</svg><p>");
    for (i, data) in run.rows.iter().enumerate() {
        let _ = write!(
            html,
            "<span style=\"color:{}\">■</span> {} &nbsp; ",
            PALETTE[i % PALETTE.len()],
            esc(&row_label(data))
        );
    }
    html.push_str("</p></section>");
}

fn switching_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"switching\"><h2>Model switching</h2><table class=\"switching\"><tr><th>row</th><th>after</th><th>switching time (s)</th><th>requests that switched</th></tr>");
    let mut previous: Option<&str> = None;
    for data in &run.rows {
        let switched = data.requests.iter().filter(|r| r.switched).count();
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{switched}</td></tr>",
            esc(&row_label(data)),
            esc(previous.unwrap_or("(start)")),
            num(data.health.switching_time_s, 4)
        );
        previous = Some(&data.row.model);
    }
    html.push_str("</table></section>");
}

fn batching_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"batching\"><h2>Batch sizes</h2><div class=\"charts\">");
    let mut any = false;
    for data in &run.rows {
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for size in data.requests.iter().filter_map(|r| r.batch_size) {
            *counts.entry(size).or_default() += 1;
        }
        if counts.is_empty() {
            continue;
        }
        any = true;
        let chart = Chart {
            title: row_label(data),
            x_label: "batch size the server reported",
            y_label: "requests",
            series: vec![Series::new(
                "requests",
                PALETTE[3],
                counts
                    .iter()
                    .map(|(&k, &v)| (f64::from(k), v as f64))
                    .collect(),
            )],
            markers: true,
        };
        html.push_str(&chart.svg("batching"));
    }
    html.push_str("</div>");
    if !any {
        html.push_str("<p class=\"note\">The server reported no batch sizes.</p>");
    }
    html.push_str("</section>");
}

fn comparison_section(html: &mut String, comparison: &Comparison) {
    let _ = write!(
        html,
        "<section id=\"comparison\"><h2>Compared with {}</h2><p class=\"note\">{:.0}% bootstrap intervals of candidate minus baseline ({} resamples, seed {}).</p><table class=\"comparison\"><tr><th>row</th><th>metric</th><th>baseline</th><th>candidate</th><th>change</th><th>interval</th><th>verdict</th></tr>",
        esc(&comparison.baseline),
        comparison.confidence * 100.0,
        comparison.resamples,
        comparison.seed
    );
    for row in &comparison.rows {
        for m in &row.metrics {
            let class = if m.verdict == Verdict::RegressedBeyondThreshold {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{class}>{}</td></tr>",
                esc(&row.row),
                m.metric.name(),
                m.stat,
                num(m.baseline, 4),
                num(m.candidate, 4),
                m.relative
                    .map_or_else(|| "–".into(), |r| format!("{:+.1}%", r * 100.0)),
                m.difference.map_or_else(
                    || "–".into(),
                    |d| format!("[{:+.4}, {:+.4}]", d.low, d.high)
                ),
                esc(&m.verdict.to_string())
            );
        }
    }
    html.push_str("</table></section>");
}

fn inputs_section(html: &mut String, run: &RunFolder) {
    html.push_str("<section id=\"inputs\"><h2>Inputs</h2><table><tr><th>row</th><th>model</th><th>input tokens</th><th>output tokens</th><th>requests</th><th>concurrency</th><th>req/s</th></tr>");
    for data in &run.rows {
        let row = &data.row;
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            data.index,
            esc(&row.model),
            row.input_tokens,
            row.output_tokens,
            row.num_requests,
            row.concurrency
                .map_or_else(|| "–".into(), |c| c.to_string()),
            row.qps.map_or_else(|| "–".into(), |q| q.to_string())
        );
    }
    let options = serde_json::to_string_pretty(&run.inputs).unwrap_or_default();
    let _ = write!(
        html,
        "</table><pre>{}</pre><p class=\"note\">Files: {}</p></section>",
        esc(&options),
        esc(&run.path.display().to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::run_folder::{Request, RowHealth, Samples};
    use coebench_plan::Row;

    fn big_run(requests: usize) -> RunFolder {
        let row = |i: usize, concurrency: u32| {
            let reqs: Vec<Request> = (0..requests)
                .map(|k| Request {
                    start_unix_s: Some(1.7e9 + k as f64 * 0.01),
                    duration_s: Some(0.5 + (k % 7) as f64 * 0.01),
                    server_ttft_s: Some(0.1),
                    server_e2e_s: Some(0.5),
                    batch_size: Some(1 + (k % 4) as u32),
                    switched: k == 0,
                    dispatch_delay_s: Some(1e-4),
                    failed: false,
                })
                .collect();
            RowData {
                index: i,
                row: serde_json::from_value::<Row>(serde_json::json!({
                    "model": "m", "inputTokens": 100, "outputTokens": 10,
                    "numRequests": requests, "concurrency": concurrency
                }))
                .unwrap(),
                samples: Samples {
                    ttft_s: (0..requests)
                        .map(|k| 0.1 + (k % 100) as f64 * 1e-3)
                        .collect(),
                    e2e_s: (0..requests)
                        .map(|k| 0.5 + (k % 100) as f64 * 1e-3)
                        .collect(),
                    output_tokens_per_s: vec![20.0; requests],
                    failed: 0,
                },
                requests: reqs,
                health: RowHealth {
                    saturated: Some(i == 1),
                    ..RowHealth::default()
                },
            }
        };
        RunFolder {
            path: "/tmp/run".into(),
            run_name: "big <run>".into(),
            rows: vec![row(0, 1), row(1, 4)],
            inputs: serde_json::json!({"endpoint": {"api": "simulator"}}),
            exit: serde_json::json!({"outcome": "succeeded"}),
        }
    }

    #[test]
    fn a_hundred_thousand_requests_make_a_bounded_page_with_every_section() {
        let html = render(&big_run(50_000), None);
        eprintln!("report of 100,000 requests: {} bytes", html.len());
        for id in SECTIONS {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "no {id}");
        }
        assert!(html.len() < 1_500_000, "{} bytes", html.len());
        assert!(
            html.contains("Showing 2000 of 100000 requests (every 50th"),
            "downsampling is stated"
        );
        assert!(html.contains("big &lt;run&gt;"), "names are escaped");
        assert!(
            html.contains("could not keep up"),
            "a saturated row is flagged"
        );
        assert!(!html.contains("<script"), "no script");
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "nothing fetched"
        );
    }
}
