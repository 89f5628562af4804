//! Reading finished runs back and judging them: a run folder's rows and per-request numbers
//! ([`run_folder`]), the bootstrap interval of a difference of quantiles ([`bootstrap`]), and
//! run-to-run comparison with significance and thresholds ([`compare`]), and the HTML report
//! ([`report`]). It reads what the output layer wrote and sends nothing.

pub mod bootstrap;
pub mod compare;
pub mod report;
pub mod run_folder;
