//! The end-to-end suite: each scenario of [`scenarios`] runs twice, written once against a
//! `kube::Client` ([`cluster::Cluster`]):
//! - `<scenario>::on_the_fake_api_server`, in CI: the in-process fake API server, the operator's
//!   real controllers in this process, and the suite playing the Job controller and the kubelet
//!   through the API, with the runner really running the run's plan;
//! - `<scenario>::on_a_real_cluster`, ignored by default: the cluster of `KUBECONFIG` with the
//!   CRDs applied (`kubectl apply -f crds/`), the operator's controllers in this process (stop an
//!   operator running in the cluster first, or use a cluster without one). What runs beside the
//!   API server is read from the cluster: with Nodes the runner Pods really run (kind, k3d: load
//!   the runner image and set `COEBENCH_E2E_IMAGE`); without them (envtest: kube-apiserver and
//!   etcd, with or without kube-controller-manager) the suite plays the kubelet by patching Pod
//!   status, and the Job controller too when kube-controller-manager does not run. Garbage
//!   collection is checked where kube-controller-manager runs.
//!
//! Run against a cluster (one namespace `coebench-e2e-<pid>` is created, or
//! `COEBENCH_E2E_NAMESPACE`):
//! `KUBECONFIG=... cargo nextest run -p coebench-operator --run-ignored only -E 'test(/^e2e::/)'`.

mod cluster;
mod kubelet;
mod scenarios;

/// For each scenario, a module with its two tests.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_fake_api_server() {
                let cluster = super::cluster::Cluster::fake("e2e").await;
                super::scenarios::$scenario(&cluster).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs a cluster: KUBECONFIG with the CRDs applied (see tests/e2e/mod.rs)"]
            async fn on_a_real_cluster() {
                let cluster = super::cluster::Cluster::from_env().await;
                super::scenarios::$scenario(&cluster).await;
            }
        }
    )*};
}

on_both!(
    the_first_benchmark_with_40_rows_reports_every_row,
    run_now_twice_in_quick_succession_makes_exactly_two_runs,
    a_killed_and_restarted_operator_duplicates_nothing,
    two_replicas_elect_one_leader_on_the_lease,
    deleting_a_benchmark_collects_what_it_made_but_not_the_volume,
    invalid_specs_are_refused_or_named,
    a_missing_secret_and_a_stuck_image_pull_fail_in_bounded_time,
    a_benchmark_on_three_workers_runs_as_an_indexed_job,
);

/// The schedule scenario waits for real minutes, so its fake twin is ignored too (run it with
/// the same command).
mod forbid_then_replace_on_a_minutely_schedule {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "takes three minutes of wall time: the schedule is minutely"]
    async fn on_the_fake_api_server() {
        let cluster = super::cluster::Cluster::fake("e2e").await;
        super::scenarios::forbid_then_replace_on_a_minutely_schedule(&cluster).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs a cluster: KUBECONFIG with the CRDs applied (see tests/e2e/mod.rs)"]
    async fn on_a_real_cluster() {
        let cluster = super::cluster::Cluster::from_env().await;
        super::scenarios::forbid_then_replace_on_a_minutely_schedule(&cluster).await;
    }
}
