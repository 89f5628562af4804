//! The two controllers and what they share: the [`Context`] handed to every reconcile, the
//! [`Settings`] that bound how long a run may wait, status writing, and Event publishing.
//!
//! - [`benchmark`]: turns a `CoeBenchmark` into `CoeBenchmarkRun`s (at creation, on run-now, and
//!   per schedule slot), trims history, summarizes.
//! - [`run`]: turns a `CoeBenchmarkRun` into a plan ConfigMap and a runner Job, and reports.
//! - [`observe`]: the pure reading of a Job and its Pods.
//!
//! [`run_controllers`] runs both until shutdown.

pub mod benchmark;
pub mod observe;
pub mod run;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::conditions::{self, types};
use crate::crd::{CoeBenchmark, CoeBenchmarkRun, LABEL_MANAGED_BY, LABEL_RUN, MANAGED_BY};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::resources::job::JobDefaults;

/// Name of the operator as a field manager and an Event reporter.
pub const FIELD_MANAGER: &str = "coebench-operator";

/// How long runs may wait for things, and how often the operator looks again.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Defaults of the runner Job.
    pub job: JobDefaults,
    /// How often a run that is not finished is looked at again (besides watch events).
    pub poll_interval: Duration,
    /// How long an image may fail to pull before the run fails.
    pub image_pull_timeout: Duration,
    /// How long a missing Secret, key or PersistentVolumeClaim may stay missing before the run
    /// fails (they may be created after the benchmark).
    pub dependency_timeout: Duration,
    /// How long the runner Pod may stay unschedulable (or not created) before the run fails.
    pub unschedulable_timeout: Duration,
    /// How long the runner container may stay in creation after its Pod was scheduled (a volume
    /// that cannot be mounted or attached) before the run fails.
    pub startup_timeout: Duration,
    /// How often a benchmark whose `rowsFrom` ConfigMap is missing or invalid is read again.
    pub invalid_retry: Duration,
    /// Most objects of one kind reconciled at once.
    pub concurrency: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            job: JobDefaults::default(),
            poll_interval: Duration::from_secs(10),
            image_pull_timeout: Duration::from_secs(300),
            dependency_timeout: Duration::from_secs(120),
            unschedulable_timeout: Duration::from_secs(900),
            startup_timeout: Duration::from_secs(600),
            invalid_retry: Duration::from_secs(30),
            concurrency: 4,
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    /// Timeouts and defaults.
    pub settings: Settings,
    /// The current time; tests substitute a [`ManualClock`](crate::clock::ManualClock).
    pub clock: Arc<dyn Clock>,
    /// Consecutive failed reconciles per object, for exponential retry delays.
    backoff: Backoff,
}

/// Consecutive failed reconciles per object (`controller/namespace/name`): the retry delay
/// doubles with each failure and resets on a success.
#[derive(Default)]
struct Backoff {
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Backoff {
    fn failed(&self, key: String) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

impl Context {
    /// A context on `client` with the system clock; `instance` names this replica in Events
    /// (the Pod name).
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            clock: Arc::new(SystemClock),
            backoff: Backoff::default(),
        }
    }

    /// Records a failed reconcile of `object` by `controller`; returns when to try again: a
    /// write refused for a stale resourceVersion (409) after 0.2 s, on the fresh object the
    /// cache is about to hold; anything else after 5 s, doubling with each consecutive failure
    /// up to 5 minutes.
    pub(crate) fn retry_after<K: Resource>(
        &self,
        controller: &str,
        object: &K,
        error: &Error,
    ) -> Action {
        let attempts = self.backoff.failed(backoff_key(controller, object));
        match error {
            Error::Kube { source, .. } if is_conflict(source) => {
                Action::requeue(Duration::from_millis(200))
            }
            _ => Action::requeue(backoff_delay(attempts)),
        }
    }

    /// Records a successful reconcile of `object` by `controller` (its backoff starts over).
    pub(crate) fn reconciled<K: Resource>(&self, controller: &str, object: &K) {
        self.backoff.succeeded(&backoff_key(controller, object));
    }

    /// The same context reading the time from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Context { clock, ..self }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Runs both controllers until `shutdown` turns true; calls `on_ready` once both caches are
/// synced.
///
/// With `namespace`, only that namespace is watched (and namespaced RBAC suffices).
pub async fn run_controllers(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: watch::Receiver<bool>,
    on_ready: impl FnOnce() + Send,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));

    let run_controller = Controller::new(
        api::<CoeBenchmarkRun>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<Job>(&client, &namespace), managed.clone())
    // The runner patches its results ConfigMaps as each row finishes: each patch is a reconcile.
    .owns(api::<ConfigMap>(&client, &namespace), managed.clone())
    .watches(
        api::<Pod>(&client, &namespace),
        watcher::Config::default().labels(LABEL_RUN),
        |pod: Pod| {
            let run = pod.labels().get(LABEL_RUN).cloned();
            let ns = pod.namespace();
            run.zip(ns)
                .map(|(run, ns)| ObjectRef::<CoeBenchmarkRun>::new(&run).within(&ns))
        },
    )
    .with_config(controller::Config::default().concurrency(ctx.settings.concurrency))
    .graceful_shutdown_on(stop(shutdown.clone()));
    let run_store = run_controller.store();
    ctx.metrics.watch_runs(run_store.clone());

    let benchmark_controller = Controller::new(
        api::<CoeBenchmark>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(
        api::<CoeBenchmarkRun>(&client, &namespace),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(ctx.settings.concurrency))
    .graceful_shutdown_on(stop(shutdown.clone()));
    let benchmark_store = benchmark_controller.store();
    ctx.metrics.watch_benchmarks(benchmark_store.clone());

    let readiness = async move {
        let synced = run_store.wait_until_ready().await.is_ok()
            && benchmark_store.wait_until_ready().await.is_ok();
        if synced {
            tracing::info!("controller caches synced; ready");
            on_ready();
        }
    };
    let runs = run_controller
        .run(run::reconcile, run::error_policy, ctx.clone())
        .for_each(|result| async move { log_result("run", result) });
    let benchmarks = benchmark_controller
        .run(benchmark::reconcile, benchmark::error_policy, ctx.clone())
        .for_each(|result| async move { log_result("benchmark", result) });
    tokio::join!(runs, benchmarks, readiness);
}

fn log_result<K, E1, E2>(
    controller: &str,
    result: std::result::Result<(ObjectRef<K>, Action), controller::Error<E1, E2>>,
) where
    K: Resource,
    E1: std::error::Error + 'static,
    E2: std::error::Error + 'static,
{
    match result {
        Ok((object, _)) => tracing::trace!(controller, %object, "reconciled"),
        // An object deleted between its event and its reconcile: nothing to do.
        Err(controller::Error::ObjectNotFound(object)) => {
            tracing::debug!(controller, %object, "object gone before its reconcile")
        }
        Err(controller::Error::ReconcilerFailed(error, object)) => {
            tracing::warn!(controller, %object, %error, "reconcile failed; retrying")
        }
        Err(error) => tracing::warn!(controller, %error, "controller error"),
    }
}

/// Writes `after` as the status of `object` when it differs from `before`, as a JSON merge
/// patch on the status subresource. Returns whether it wrote anything.
///
/// `before` is what the reconcile read, at `object`'s resourceVersion, and the patch carries
/// that version as a precondition: when the object has changed since (the cache was stale),
/// the API server answers 409 and nothing is written, so a decision taken on an old status
/// never overwrites a newer one (a finished run's reason, say). The reconcile is then retried
/// on the fresh object (see `error_policy`).
pub(crate) async fn write_status<K, S>(
    api: &Api<K>,
    object: &K,
    before: Option<&S>,
    after: &S,
) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let to_value = |s: &S| {
        serde_json::to_value(s).map_err(|source| Error::Serialize {
            what: format!("the status of {name}"),
            source,
        })
    };
    let old = match before {
        Some(s) => to_value(s)?,
        None => serde_json::json!({}),
    };
    let new = to_value(after)?;
    let Some(diff) = crate::status::merge_patch(&old, &new) else {
        return Ok(false);
    };
    let mut patch = serde_json::json!({ "status": diff });
    if let Some(version) = object.resource_version() {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::kube(format!("update the status of {name}")))?;
    Ok(true)
}

/// Publishes one Event per condition transition between `before` and `after`.
pub(crate) async fn publish_transitions<K>(
    ctx: &Context,
    object: &K,
    before: &[Condition],
    after: &[Condition],
    controller: &'static str,
) where
    K: Resource<DynamicType = ()>,
{
    for c in conditions::transitions(before, after) {
        if c.type_ == types::REGRESSED {
            // Published by the regression step, once per run compared (a run regressing after
            // another is no transition of the benchmark's condition, and still an Event).
            continue;
        }
        let warning = matches!(
            (c.type_.as_str(), c.status.as_str()),
            (types::FAILED, "True")
                | (types::VALID, "False")
                | (types::JOB_CREATED, "False")
                | (types::LAST_RUN_SUCCEEDED, "False")
        ) || matches!(
            c.reason.as_str(),
            "ImagePullBackOff" | "Unschedulable" | "ContainerConfigError"
        );
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        publish(ctx, object, warning, &c.reason, &c.type_, note, controller).await;
    }
}

/// Publishes an Event; a failure is logged and counted, never fatal to the reconcile.
pub(crate) async fn publish<K>(
    ctx: &Context,
    object: &K,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
    controller: &'static str,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(truncate_note(note)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(source) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        let error = Error::Event {
            object: object.meta().name.clone().unwrap_or_default(),
            source,
        };
        tracing::warn!(%error, "event not published");
        ctx.metrics
            .reconcile_error(controller, error.metric_label());
    }
}

fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1000;
    if note.len() > MAX {
        let mut cut = MAX - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// Whether a client error is the API server's 404.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is the API server's 409 AlreadyExists.
/// The uid of `object`'s controlling owner, if it has one.
pub(crate) fn controller_uid<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// After a create answered 409: the object under the name is ours when its controlling owner is
/// `expected_owner`; otherwise it belongs to an earlier owner of the same name that the garbage
/// collector has not deleted yet, and adopting it would follow the wrong object.
pub(crate) fn check_owner<K: Resource<DynamicType = ()>>(
    existing: &K,
    expected_owner: &str,
) -> Result<()> {
    match controller_uid(existing) {
        Some(uid) if uid == expected_owner => Ok(()),
        other => Err(Error::NameTaken {
            object: format!(
                "{} {}/{}",
                K::kind(&()),
                existing.meta().namespace.clone().unwrap_or_default(),
                existing.meta().name.clone().unwrap_or_default()
            ),
            owner: other.unwrap_or("no owner").to_string(),
            expected: expected_owner.to_string(),
        }),
    }
}

fn backoff_key<K: Resource>(controller: &str, object: &K) -> String {
    let meta = object.meta();
    format!(
        "{controller}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// 5 s after the first consecutive failure, doubling after each one, at most 5 minutes.
fn backoff_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(6);
    (Duration::from_secs(5) * 2u32.pow(doublings)).min(Duration::from_secs(300))
}

pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_from_5_s_up_to_5_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
