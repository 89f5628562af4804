//! Reading finished runs back and judging them: a run folder's rows and per-request numbers
//! ([`run_folder`]), the bootstrap interval of a difference of quantiles ([`bootstrap`]), and
//! run-to-run comparison with significance and thresholds ([`compare`]), and the HTML report
//! ([`report`]). It reads what the output layer wrote and sends nothing.

use crate::statistics::stats::quantile_sorted;

/// `values` without NaN and infinities, sorted: what every quantile here is taken of.
pub fn sorted_finite(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The quantile at `level` of `sorted` (as [`sorted_finite`] gives it); `None` when empty.
pub fn quantile_of(sorted: &[f64], level: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| quantile_sorted(sorted, level))
}

pub mod bootstrap;
pub mod compare;
pub mod report;
pub mod run_folder;
