//! Multi-worker runs (`spec.workers` > 1): the runner Job becomes an Indexed Job of one Pod per
//! worker, and a headless Service gives each Pod a DNS name, so the workers find the
//! coordinator (index 0) at `<job>-0.<run>-workers.<namespace>.svc:7470`.
//!
//! Every Pod runs the single-Pod command plus `--workers N --coordinator <address>`; the
//! runner reads its index from `JOB_COMPLETION_INDEX` (set by Kubernetes in Indexed Jobs).
//! Index 0 coordinates, writes every file, the results ConfigMaps and the termination report.
//!
//! Failure policy: `backoffLimitPerIndex: 0` (no index is ever retried, so a dead worker is
//! never replaced silently by a fresh one joining a run already under way) and no global
//! `backoffLimit` (so one failed index does not make the Job controller kill the others at
//! once: the coordinator notices the lost worker itself, writes what was measured and exits 8,
//! `WorkerLost`, with its report). The Job then ends `Failed` (`FailedIndexes`) once every index
//! has ended. A worker that never starts is the operator's to catch (see
//! `controller::observe::workers`).
//!
//! With one worker nothing here applies: the Job is exactly the single-Pod Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ContainerPort, Service, ServicePort, ServiceSpec, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::crd::{CoeBenchmarkRun, LABEL_RUN};
use crate::error::Result;
use crate::resources::{job_name, namespace_and_owner, run_labels};

/// The coordinator's port (container port `coordinator`, Service port `coordinator`).
pub const COORDINATOR_PORT: i32 = 7470;
/// Name of the coordinator's container port and Service port.
pub const COORDINATOR_PORT_NAME: &str = "coordinator";
/// Label (and annotation) Kubernetes puts on each Pod of an Indexed Job: its index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The topology key the workers are spread over by default: one node, one domain.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Longest DNS label (a Service name).
const MAX_DNS_LABEL: usize = 63;

/// Name of a run's headless Service: `<run>-workers`; when that is longer than 63 characters,
/// the run's name is cut and a hash of the whole name keeps it unique.
pub fn workers_service_name(run: &str) -> String {
    let plain = format!("{run}-workers");
    if plain.len() <= MAX_DNS_LABEL {
        return plain;
    }
    // FNV-1a: stable across releases (std's hasher is not).
    let hash = run.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("-{:08x}-workers", hash as u32);
    let prefix = run[..MAX_DNS_LABEL - suffix.len()].trim_end_matches(['-', '.']);
    format!("{prefix}{suffix}")
}

/// Where workers reach the coordinator: `<job>-0.<service>.<namespace>.svc:7470`.
pub fn coordinator_address(run: &str, namespace: &str) -> String {
    format!(
        "{}-0.{}.{namespace}.svc:{COORDINATOR_PORT}",
        job_name(run),
        workers_service_name(run)
    )
}

/// The arguments every Pod of a multi-worker run adds to the single-Pod command; none with one
/// worker.
pub fn worker_args(run: &CoeBenchmarkRun, namespace: &str) -> Vec<String> {
    let workers = run.spec.worker_count();
    if workers <= 1 {
        return Vec::new();
    }
    vec![
        "--workers".into(),
        workers.to_string(),
        "--coordinator".into(),
        coordinator_address(&run.name_any(), namespace),
    ]
}

/// The default spread of a run's Pods: at most one more on any node than on another, as a
/// preference (`ScheduleAnyway`), so it never conflicts with `runner.affinity` or a
/// `nodeSelector` that leaves one node.
pub fn default_spread(run: &CoeBenchmarkRun) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: SPREAD_TOPOLOGY_KEY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(LABEL_RUN.to_string(), run.name_any())])),
            ..LabelSelector::default()
        }),
        // Only this run's Job's Pods, not a deleted namesake's still terminating.
        match_label_keys: Some(vec!["batch.kubernetes.io/controller-uid".into()]),
        ..TopologySpreadConstraint::default()
    }]
}

/// Turns the single-Pod runner Job of `run` into its Indexed Job when the run has more than
/// one worker (see the module docs); leaves it untouched otherwise.
pub fn apply_workers(run: &CoeBenchmarkRun, namespace: &str, job: &mut Job) {
    let workers = run.spec.worker_count();
    if workers <= 1 {
        return;
    }
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    let n = i32::try_from(workers).unwrap_or(i32::MAX);
    spec.completion_mode = Some("Indexed".into());
    spec.completions = Some(n);
    spec.parallelism = Some(n);
    spec.backoff_limit = None;
    spec.backoff_limit_per_index = Some(0);
    let Some(pod) = spec.template.spec.as_mut() else {
        return;
    };
    pod.subdomain = Some(workers_service_name(&run.name_any()));
    pod.topology_spread_constraints = Some(
        run.spec
            .runner
            .topology_spread_constraints
            .clone()
            .unwrap_or_else(|| default_spread(run)),
    );
    for container in &mut pod.containers {
        container
            .args
            .get_or_insert_with(Vec::new)
            .extend(worker_args(run, namespace));
        container
            .ports
            .get_or_insert_with(Vec::new)
            .push(ContainerPort {
                name: Some(COORDINATOR_PORT_NAME.into()),
                container_port: COORDINATOR_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            });
    }
}

/// The headless Service of a multi-worker run, owned by it; `None` with one worker.
///
/// `publishNotReadyAddresses` makes each Pod's name resolve as soon as it has an IP, before
/// any readiness (the runner has no readiness probe and the workers dial the coordinator at
/// once).
pub fn build_workers_service(run: &CoeBenchmarkRun) -> Result<Option<Service>> {
    if run.spec.worker_count() <= 1 {
        return Ok(None);
    }
    let name = run.name_any();
    let (namespace, owner) = namespace_and_owner(run)?;
    Ok(Some(Service {
        metadata: ObjectMeta {
            name: Some(workers_service_name(&name)),
            namespace: Some(namespace),
            labels: Some(run_labels(run)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([(LABEL_RUN.to_string(), name)])),
            ports: Some(vec![ServicePort {
                name: Some(COORDINATOR_PORT_NAME.into()),
                port: COORDINATOR_PORT,
                target_port: Some(IntOrString::Int(COORDINATOR_PORT)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::job::tests::sample_run;
    use crate::resources::job::{JobDefaults, build_job};

    fn three_workers() -> CoeBenchmarkRun {
        let mut run = sample_run();
        run.spec.workers = Some(3);
        run
    }

    #[test]
    fn one_worker_keeps_the_single_pod_job_and_needs_no_service() {
        let run = sample_run();
        let job = build_job(&run, &JobDefaults::default()).unwrap();
        let mut shaped = job.clone();
        apply_workers(&run, "team-a", &mut shaped);
        assert_eq!(shaped, job);
        let spec = job.spec.unwrap();
        assert_eq!(spec.completion_mode, None);
        assert_eq!(spec.completions, None);
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.subdomain, None);
        assert_eq!(pod.topology_spread_constraints, None);
        assert!(worker_args(&run, "team-a").is_empty());
        assert!(build_workers_service(&run).unwrap().is_none());
        let mut explicit = sample_run();
        explicit.spec.workers = Some(1);
        assert_eq!(
            build_job(&explicit, &JobDefaults::default()).unwrap(),
            build_job(&run, &JobDefaults::default()).unwrap()
        );
    }

    #[test]
    fn several_workers_make_an_indexed_job_that_never_retries_an_index() {
        let job = build_job(&three_workers(), &JobDefaults::default()).unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(3)));
        assert_eq!(spec.backoff_limit_per_index, Some(0));
        assert_eq!(spec.backoff_limit, None);
        assert_eq!(spec.max_failed_indexes, None);
        // The deadline and TTL are the single-Pod Job's.
        assert_eq!(spec.active_deadline_seconds, Some(1630));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.subdomain.as_deref(), Some("bench-1-workers"));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        let args = c.args.as_ref().unwrap().join(" ");
        assert!(
            args.starts_with("run --plan /etc/coebench/plan.json --run-name bench-1 "),
            "{args}"
        );
        assert!(
            args.ends_with(
                "--publish-results bench-1 --workers 3 \
                 --coordinator bench-1-0.bench-1-workers.team-a.svc:7470"
            ),
            "{args}"
        );
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref().unwrap(), p.container_port))
            .collect();
        assert_eq!(ports, [("metrics", 9090), ("coordinator", 7470)]);
    }

    #[test]
    fn workers_are_spread_across_nodes_unless_the_run_says_otherwise() {
        let job = build_job(&three_workers(), &JobDefaults::default()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let spread = pod.topology_spread_constraints.unwrap();
        assert_eq!(spread.len(), 1);
        let s = &spread[0];
        assert_eq!(
            (
                s.max_skew,
                s.topology_key.as_str(),
                s.when_unsatisfiable.as_str()
            ),
            (1, "kubernetes.io/hostname", "ScheduleAnyway")
        );
        let selector = s.label_selector.as_ref().unwrap().match_labels.as_ref();
        assert_eq!(selector.unwrap()["coebench.dev/run"], "bench-1");

        let mut zoned = three_workers();
        let own = TopologySpreadConstraint {
            max_skew: 2,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        };
        zoned.spec.runner.topology_spread_constraints = Some(vec![own.clone()]);
        let job = build_job(&zoned, &JobDefaults::default()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.topology_spread_constraints, Some(vec![own]));
        // An empty list turns the spread off.
        zoned.spec.runner.topology_spread_constraints = Some(vec![]);
        let job = build_job(&zoned, &JobDefaults::default()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.topology_spread_constraints, Some(vec![]));
    }

    #[test]
    fn the_service_is_headless_resolves_unready_pods_and_is_owned_by_the_run() {
        let service = build_workers_service(&three_workers()).unwrap().unwrap();
        assert_eq!(service.metadata.name.as_deref(), Some("bench-1-workers"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &service.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CoeBenchmarkRun", "uid-run-1", Some(true))
        );
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap()["coebench.dev/run"], "bench-1");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port),
            (Some("coordinator"), 7470)
        );
        // The Job's Pods carry the selected label.
        let job = build_job(&three_workers(), &JobDefaults::default()).unwrap();
        let labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["coebench.dev/run"], "bench-1");
    }

    #[test]
    fn long_run_names_still_give_a_unique_dns_label() {
        let long = "b".repeat(52) + "-1234567890";
        let name = workers_service_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-workers"), "{name}");
        assert_ne!(
            name,
            workers_service_name(&("b".repeat(52) + "-1234567891"))
        );
        assert_eq!(workers_service_name("bench-1"), "bench-1-workers");
    }
}
