//! The operator's integration tests, in one test binary: controller scenarios against the
//! in-process fake API server, metrics scraped by a real Prometheus, the checks of the Helm
//! chart, the image and the examples, and an end-to-end test on a real cluster (ignored by
//! default).

mod chart;
mod e2e;
mod metrics;
mod scenarios;
mod support;
