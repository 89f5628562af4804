//! Encoding registries for a scrape: OpenMetrics for clients that ask for it (Prometheus does),
//! the Prometheus text format 0.0.4 otherwise (`curl`, `promtool check metrics`, Pushgateway).
//! Shared by the runner's and the operator's `/metrics`. No I/O.

use std::fmt;

use prometheus_client::registry::Registry;

/// `Content-Type` of OpenMetrics text 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// An encoded scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposition {
    /// The `Content-Type` header to send.
    pub content_type: &'static str,
    /// The text.
    pub body: String,
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Encodes `registries`, in order, into one scrape in the format `accept` asks for.
pub fn encode(registries: &[&Registry], accept: Option<&str>) -> Result<Exposition, fmt::Error> {
    let mut body = String::new();
    if wants_openmetrics(accept) {
        for registry in registries {
            prometheus_client::encoding::text::encode_registry(&mut body, registry)?;
        }
        prometheus_client::encoding::text::encode_eof(&mut body)?;
        Ok(Exposition {
            content_type: OPENMETRICS_CONTENT_TYPE,
            body,
        })
    } else {
        for registry in registries {
            prometheus_client::encoding::prometheus_text::encode(&mut body, registry)?;
        }
        Ok(Exposition {
            content_type: PROMETHEUS_TEXT_CONTENT_TYPE,
            body,
        })
    }
}

/// The names of the samples a scrape in the Prometheus text format holds, from its `# TYPE`
/// lines: counters already end in `_total`; a histogram `h` yields `h_bucket`, `h_count` and
/// `h_sum`. Used to check dashboards against what is exported.
pub fn sample_names(prometheus_text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in prometheus_text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "histogram" => {
                for suffix in ["_bucket", "_count", "_sum"] {
                    names.push(format!("{name}{suffix}"));
                }
            }
            "summary" => {
                names.push(name.to_string());
                for suffix in ["_count", "_sum"] {
                    names.push(format!("{name}{suffix}"));
                }
            }
            _ => names.push(name.to_string()),
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;

    fn registry() -> Registry {
        let mut registry = Registry::with_prefix("x");
        let counter: Counter = Counter::default();
        counter.inc();
        registry.register("requests", "Requests", counter);
        registry.register("latency_seconds", "Latency", Histogram::new([1.0]));
        registry
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        let r = registry();
        let om = encode(
            &[&r],
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        )
        .unwrap();
        assert_eq!(om.content_type, OPENMETRICS_CONTENT_TYPE);
        assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
        let text = encode(&[&r, &r], None).unwrap();
        assert_eq!(text.content_type, PROMETHEUS_TEXT_CONTENT_TYPE);
        assert!(!text.body.contains("# EOF"));
        assert!(text.body.contains("x_requests_total 1"), "{}", text.body);
        assert_eq!(
            sample_names(&text.body),
            [
                "x_latency_seconds_bucket",
                "x_latency_seconds_count",
                "x_latency_seconds_sum",
                "x_requests_total"
            ]
        );
    }
}
