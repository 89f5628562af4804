//! Which requests of a row each worker sends: a pure, deterministic rule every process computes
//! for itself from the plan, so nothing but the plan travels.
//!
//! - **Closed loop** (concurrency `C` over `W` workers): worker `w` keeps `C / W` requests in
//!   flight, plus one for the first `C % W` workers. Request `i` goes to worker
//!   `(i mod C) mod W`: the concurrency slots `0..C` are dealt to workers round-robin, and
//!   requests to slots round-robin, so each worker's share of the requests is proportional to
//!   its share of the concurrency, and is `i mod W` when the shares are equal. Workers beyond
//!   `C` get nothing.
//! - **Open loop**: the one seeded schedule of the row (`engine::arrival::arrival_offsets`);
//!   request `i` goes to worker `i mod W` at its single-process send time, so the union of the
//!   workers' intended send times is exactly the single-process schedule.
//!
//! Every request keeps its index in the row, so its id, its prompt (seeded by the run's seed and
//! prompt nonce) and its place in the row's files are the ones one process would give it.

use coebench_plan::{Load, Row};

use crate::engine::row::{RowShare, row_concurrency};

/// The worker that sends request `index` of `row` when it runs on `workers` workers.
pub fn worker_of(row: &Row, workers: u32, index: u32) -> u32 {
    let workers = workers.max(1);
    match row.load() {
        Some(Load::Rate { .. }) => index % workers,
        _ => (index % row_concurrency(row).max(1)) % workers,
    }
}

/// Requests worker `worker` keeps in flight at once (closed loop): its share of the row's
/// concurrency, the remainder going to the first workers.
pub fn concurrency_of(row: &Row, workers: u32, worker: u32) -> u32 {
    let workers = workers.max(1);
    let total = row_concurrency(row);
    total / workers + u32::from(worker < total % workers)
}

/// Worker `worker`'s share of `row` on `workers` workers (nothing for a worker the row does not
/// use: `worker >= workers`).
pub fn share(row: &Row, workers: u32, worker: u32) -> RowShare {
    if worker >= workers.max(1) {
        return RowShare {
            requests: Vec::new().into(),
            concurrency: 0,
        };
    }
    RowShare {
        requests: (0..row.num_requests)
            .filter(|&i| worker_of(row, workers, i) == worker)
            .collect(),
        concurrency: concurrency_of(row, workers, worker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(concurrency: Option<u32>, qps: Option<f64>, n: u32) -> Row {
        Row {
            model: "m".into(),
            input_tokens: 10,
            output_tokens: 10,
            num_requests: n,
            concurrency,
            qps,
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

    fn union_is_every_request_once(row: &Row, workers: u32) {
        let mut all: Vec<u32> = (0..workers)
            .flat_map(|w| share(row, workers, w).requests.to_vec())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..row.num_requests).collect::<Vec<_>>());
    }

    #[test]
    fn closed_loop_concurrency_is_split_with_the_remainder_first() {
        let r = row(Some(10), None, 100);
        let c: Vec<u32> = (0..4).map(|w| concurrency_of(&r, 4, w)).collect();
        assert_eq!(c, [3, 3, 2, 2]);
        assert_eq!(c.iter().sum::<u32>(), 10);
        union_is_every_request_once(&r, 4);
        // Requests follow the concurrency: 30/30/20/20 of 100.
        let n: Vec<usize> = (0..4).map(|w| share(&r, 4, w).requests.len()).collect();
        assert_eq!(n, [30, 30, 20, 20]);
    }

    #[test]
    fn equal_shares_deal_requests_round_robin() {
        let r = row(Some(8), None, 20);
        for w in 0..4 {
            let s = share(&r, 4, w);
            assert!(s.requests.iter().all(|i| i % 4 == w));
            assert_eq!(s.concurrency, 2);
        }
    }

    #[test]
    fn workers_beyond_the_concurrency_get_nothing() {
        let r = row(Some(2), None, 9);
        assert_eq!(share(&r, 4, 2).requests.len(), 0);
        assert_eq!(concurrency_of(&r, 4, 3), 0);
        union_is_every_request_once(&r, 4);
        assert_eq!(share(&r, 2, 5).requests.len(), 0);
    }

    #[test]
    fn open_loop_requests_go_to_i_mod_n() {
        let r = row(None, Some(5.0), 23);
        for w in 0..3 {
            assert!(share(&r, 3, w).requests.iter().all(|i| i % 3 == w));
        }
        union_is_every_request_once(&r, 3);
    }

    #[test]
    fn one_worker_sends_the_whole_row() {
        let r = row(Some(3), None, 7);
        assert_eq!(share(&r, 1, 0), RowShare::whole(&r));
    }
}
