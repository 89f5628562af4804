//! An in-process, stateful fake Kubernetes API server, good enough for the real
//! `kube::runtime::Controller` to run against it with no cluster.
//!
//! It serves a `kube::Client` through `tower::service_fn` (no sockets) and keeps every object in
//! a store keyed by (apiVersion/plural, namespace, name), with a cluster-wide resourceVersion
//! counter like etcd's. Verbs:
//! - GET one object; LIST with `labelSelector` (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`) and
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`), across namespaces too;
//! - WATCH (`?watch=true`): newline-delimited ADDED/MODIFIED/DELETED events after the requested
//!   `resourceVersion` (replayed from history, then live), plus a BOOKMARK when asked; after
//!   [`FakeApiServer::compact_and_close_watches`], a watch from a compacted version gets one
//!   ERROR event with a 410 Gone Status, as from a real API server;
//! - POST (409 AlreadyExists on a duplicate; sets uid, resourceVersion, creationTimestamp,
//!   generation; ignores `status` of kinds with a status subresource; `generateName`);
//! - PATCH merge / strategic (as merge) / apply (as merge, creating when missing) / JSON patch,
//!   on the object or its `/status` subresource; a no-op patch changes nothing and emits nothing;
//! - PUT (409 Conflict on a stale resourceVersion), on the object or `/status`;
//! - DELETE: finalizers set `deletionTimestamp`; otherwise the object goes (DELETED event) and
//!   so do its dependents, by ownerReference uid (the garbage collector).
//!
//! Errors are `metav1.Status` bodies, so kube maps them to `kube::Error::Api`. There is no Job
//! controller or kubelet: tests play them with [`FakeApiServer::start_job_pod`],
//! [`FakeApiServer::terminate_pod`], [`FakeApiServer::mark_job`] and friends. Every request is
//! logged ([`FakeApiServer::requests`]). [`FakeApiServer::with_clock`] takes server-set times
//! from a test clock, so a scenario can move time for the server and the operator together.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use coebench_operator::clock::Clock;
use http::Request;
use http_body_util::combinators::UnsyncBoxBody;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::broadcast;

mod http_api;
mod select;

use http_api::handle;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Label and annotation of each Pod of an Indexed Job: its completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The status code answered.
    pub status: u16,
}

impl RequestRecord {
    /// The call this request made, as RBAC sees it: `"<verb> <group>/<resource>[/<sub>]"`
    /// (the core group is empty: `"get /secrets"`).
    pub fn call(&self) -> String {
        let (group, resource, verb) = permission(&self.method, &self.path, &self.query);
        format!("{verb} {group}/{resource}")
    }

    /// Whether the request changes state (create, patch, update, delete).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

/// The RBAC permission a request (method, path without query, query) needs:
/// (apiGroup, resource[/subresource], verb).
pub fn permission(method: &str, path: &str, query: &str) -> (String, String, String) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = if segs[0] == "api" {
        (String::new(), &segs[2..])
    } else {
        (segs[1].to_string(), &segs[3..])
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    let mut resource = rest[0].to_string();
    if let Some(sub) = rest.get(2) {
        resource = format!("{resource}/{sub}");
    }
    let named = rest.len() >= 2;
    let verb = match (method, named) {
        ("GET", true) => "get",
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m}"),
    };
    (group, resource, verb.to_string())
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    resource: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct StoredEvent {
    rv: u64,
    /// When the change happened; a watch delivers it no earlier than this plus its delay.
    emitted: std::time::Instant,
    resource: String,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    /// The clock of server-set times; the system clock when `None`.
    clock: Option<Arc<dyn Clock>>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    history: Vec<StoredEvent>,
    requests: Vec<RequestRecord>,
    /// How late watches of a resource (`resource_of::<K>()`) deliver live events: a cache fed
    /// by them is that much behind the store, as an informer's is on a busy API server.
    watch_delays: BTreeMap<String, std::time::Duration>,
    /// With `Some`, dependents of a deleted object are collected that long after it, as the
    /// real garbage collector does (in the background, not in the DELETE).
    gc_delay: Option<std::time::Duration>,
    /// Owners deleted whose dependents are due for collection: (when, owner uid).
    pending_gc: Vec<(std::time::Instant, String)>,
    /// History at or before this resourceVersion is gone (etcd compaction): a watch from an
    /// older version gets 410 Gone.
    compacted_rv: u64,
    /// Watches answered 410 Gone.
    expired_watches: usize,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<StoredEvent>,
    /// A message on it ends every open watch (as an API server restart or a watch timeout does).
    closes: broadcast::Sender<()>,
}

/// The fake API server. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

/// `apiVersion/plural` of a kube resource type, the store's resource key.
pub fn resource_of<K: Resource<DynamicType = ()>>() -> String {
    format!("{}/{}", K::api_version(&()), K::plural(&()))
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "pods" => "Pod",
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "jobs" => "Job",
        "services" => "Service",
        "events" => "Event",
        "leases" => "Lease",
        "namespaces" => "Namespace",
        "coebenchmarks" => "CoeBenchmark",
        "coebenchmarkruns" => "CoeBenchmarkRun",
        _ => "Unknown",
    }
}

fn has_status_subresource(plural: &str) -> bool {
    matches!(
        plural,
        "pods" | "jobs" | "persistentvolumeclaims" | "coebenchmarks" | "coebenchmarkruns"
    )
}

fn plural_of(resource: &str) -> &str {
    resource.rsplit('/').next().unwrap_or(resource)
}

fn api_version_of(resource: &str) -> &str {
    resource.rsplit_once('/').map(|(v, _)| v).unwrap_or("")
}

fn status_body(code: u16, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

/// RFC 7386 merge of `patch` into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl State {
    /// The current time, RFC 3339, for server-set timestamps.
    fn now_string(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(Timestamp::now, |c| c.now())
            .to_string()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(
        &mut self,
        events: &broadcast::Sender<StoredEvent>,
        type_: &'static str,
        key: &Key,
        object: Value,
    ) {
        let event = StoredEvent {
            rv: self.rv,
            emitted: std::time::Instant::now(),
            resource: key.resource.clone(),
            namespace: key.namespace.clone(),
            type_,
            object,
        };
        self.history.push(event.clone());
        let _ = events.send(event);
    }

    /// Stores `object` under `key` as a new version, emitting ADDED or MODIFIED.
    fn store(
        &mut self,
        events: &broadcast::Sender<StoredEvent>,
        key: &Key,
        mut object: Value,
    ) -> Value {
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let type_ = if self.objects.contains_key(key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.clone(), object.clone());
        self.emit(events, type_, key, object.clone());
        object
    }

    /// Removes `key` and, recursively, every object it owns.
    fn remove(&mut self, events: &broadcast::Sender<StoredEvent>, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(events, "DELETED", key, object.clone());
        if let (Some(delay), Some(uid)) = (self.gc_delay, object["metadata"]["uid"].as_str()) {
            self.pending_gc
                .push((std::time::Instant::now() + delay, uid.to_string()));
        } else if let Some(uid) = object["metadata"]["uid"].as_str() {
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for dependent in dependents {
                self.remove(events, &dependent);
            }
        }
        Some(object)
    }

    /// Deletes the dependents of owners whose collection is due (each of those in turn waits
    /// for its own delay before its dependents go).
    fn collect_due_garbage(&mut self, events: &broadcast::Sender<StoredEvent>) {
        let now = std::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_gc)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.pending_gc = later;
        for (_, uid) in due {
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str()))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            for dependent in dependents {
                self.remove(events, &dependent);
            }
        }
    }

    /// Fills server-set fields of a new object.
    fn prepare_new(&mut self, key: &Key, mut object: Value) -> Value {
        self.uid += 1;
        let plural = plural_of(&key.resource);
        if object["apiVersion"].is_null() {
            object["apiVersion"] = json!(api_version_of(&key.resource));
        }
        if object["kind"].is_null() {
            object["kind"] = json!(kind_of(plural));
        }
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.name);
        if !key.namespace.is_empty() {
            meta["namespace"] = json!(key.namespace);
        }
        meta["uid"] = json!(format!("uid-{:06}", self.uid));
        meta["creationTimestamp"] = json!(self.now_string());
        meta["generation"] = json!(1);
        object
    }
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

impl FakeApiServer {
    /// An empty API server.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(16_384);
        let (closes, _) = broadcast::channel(16);
        FakeApiServer {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events,
                closes,
            }),
        }
    }

    /// An empty API server whose creation, deletion and fake kubelet times come from `clock`
    /// (share it with the operator's `Context` so both see the same time).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let fake = Self::new();
        fake.state().clock = Some(clock);
        fake
    }

    /// The current time of this server, RFC 3339.
    fn now_string(&self) -> String {
        self.state().now_string()
    }

    /// A client talking to this server; default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let inner = self.inner.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let inner = inner.clone();
            async move { Ok::<_, Infallible>(handle(&inner, req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Serves this API server over HTTP on a loopback port as well, for clients other than
    /// [`FakeApiServer::client`] (the runner's results publisher); returns its base URL. Call it
    /// inside the test's runtime; it serves until the runtime ends.
    pub async fn serve_http(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let inner = inner.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let bytes = http_body_util::BodyExt::collect(body)
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let req =
                                    Request::from_parts(parts, kube::client::Body::from(bytes));
                                Ok::<_, Infallible>(handle(&inner, req).await)
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("fake state lock")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
    }

    /// From now on, watches of `K` opened afterwards deliver each live event `delay` after it
    /// happened (reads stay current): the controller's cache of `K` is stale by `delay`, which
    /// is how the races of a real API server show up here.
    pub fn delay_watches<K: Resource<DynamicType = ()>>(&self, delay: std::time::Duration) {
        self.state().watch_delays.insert(resource_of::<K>(), delay);
    }

    /// From now on, deleting an object leaves its dependents in place for `delay`, then
    /// deletes them in the background, as the real garbage collector does: for that long, a
    /// re-created owner of the same name meets its predecessor's objects. Call it inside the
    /// test's runtime.
    pub fn delay_garbage_collection(&self, delay: std::time::Duration) {
        self.state().gc_delay = Some(delay);
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let mut state = inner.state.lock().expect("fake state lock");
                state.collect_due_garbage(&inner.events);
            }
        });
    }

    /// Compacts the history as etcd does (every version so far expires) and ends every open
    /// watch: a client that watches again from a version it saw gets 410 Gone and must list
    /// afresh, as on a real API server after compaction or a restart.
    pub fn compact_and_close_watches(&self) {
        {
            let mut state = self.state();
            state.compacted_rv = state.rv;
            state.history.clear();
        }
        let _ = self.inner.closes.send(());
    }

    /// How many watches were answered 410 Gone.
    pub fn expired_watches(&self) -> usize {
        self.state().expired_watches
    }

    /// A mark in the request log, for [`FakeApiServer::assert_writes_since`].
    pub fn mark(&self) -> usize {
        self.state().requests.len()
    }

    /// Asserts that the writes made since `mark` are exactly `expected` (as
    /// [`RequestRecord::call`] names them, e.g. `"patch coebench.dev/coebenchmarkruns/status"`),
    /// each at least once, and nothing else: the test fails on a missing call and on an extra
    /// one, naming both.
    pub fn assert_writes_since(&self, mark: usize, expected: &[&str]) {
        let made: std::collections::BTreeSet<String> = self.state().requests[mark..]
            .iter()
            .filter(|r| r.is_write())
            .map(RequestRecord::call)
            .collect();
        let expected: std::collections::BTreeSet<String> =
            expected.iter().map(|c| c.to_string()).collect();
        let missing: Vec<_> = expected.difference(&made).collect();
        let extra: Vec<_> = made.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "writes since the mark: missing {missing:?}, unexpected {extra:?} (made {made:?})"
        );
    }

    /// Creates or replaces `object` directly (no HTTP), filling server-set fields on creation.
    pub fn put<K: Resource<DynamicType = ()> + serde::Serialize>(&self, object: &K) -> Value {
        let value = serde_json::to_value(object).expect("serializable");
        self.put_value(&resource_of::<K>(), value)
    }

    /// Like [`Self::put`], for a raw object under `resource` (`apiVersion/plural`).
    pub fn put_value(&self, resource: &str, value: Value) -> Value {
        let key = Key {
            resource: resource.to_string(),
            namespace: value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: value["metadata"]["name"]
                .as_str()
                .expect("a name")
                .to_string(),
        };
        let mut state = self.state();
        let value = match state.objects.get(&key) {
            Some(existing) => {
                let mut v = value;
                for field in ["uid", "creationTimestamp", "generation"] {
                    v["metadata"][field] = existing["metadata"][field].clone();
                }
                v
            }
            None => state.prepare_new(&key, value),
        };
        state.store(&self.inner.events, &key, value)
    }

    /// The stored object, if any.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        let key = Key {
            resource: resource_of::<K>(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let value = self.state().objects.get(&key).cloned()?;
        Some(serde_json::from_value(value).expect("stored objects deserialize"))
    }

    /// Every stored object of kind `K` in `namespace`, by name.
    pub fn list<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
    ) -> Vec<K> {
        let resource = resource_of::<K>();
        self.state()
            .objects
            .iter()
            .filter(|(k, _)| k.resource == resource && k.namespace == namespace)
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored objects deserialize"))
            .collect()
    }

    /// Changes a stored object in place (as a controller or the kubelet would), emitting
    /// MODIFIED. Panics when it does not exist.
    pub fn modify<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let key = Key {
            resource: resource_of::<K>(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let mut state = self.state();
        let mut value = state
            .objects
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key:?}"));
        change(&mut value);
        state.store(&self.inner.events, &key, value);
    }

    /// Deletes an object directly, with the same cascade as an HTTP DELETE.
    pub fn delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) -> bool {
        let key = Key {
            resource: resource_of::<K>(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.state().remove(&self.inner.events, &key).is_some()
    }

    /// The stored Job `namespace/job`, as JSON.
    fn stored_job(&self, namespace: &str, job: &str) -> Value {
        let key = Key {
            resource: resource_of::<k8s_openapi::api::batch::v1::Job>(),
            namespace: namespace.into(),
            name: job.into(),
        };
        self.state()
            .objects
            .get(&key)
            .cloned()
            .expect("the Job exists")
    }

    /// Plays the Job controller: creates the runner Pod of Job `namespace/job` from its
    /// template (Pending, scheduled) and marks the Job started. Returns the Pod's name.
    pub fn start_job_pod(&self, namespace: &str, job: &str) -> String {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let job_value = self.stored_job(namespace, job);
        let template = &job_value["spec"]["template"];
        let pod_name = format!("{job}-x7k2p");
        let now = self.now_string();
        let pod = pending_job_pod(
            &job_value,
            namespace,
            &pod_name,
            json!({}),
            template["spec"].clone(),
            &now,
        );
        self.put_value(&resource_of::<Pod>(), pod);
        self.modify::<Job>(namespace, job, |j| {
            j["status"]["startTime"] = json!(now);
            j["status"]["active"] = json!(1);
        });
        pod_name
    }

    /// Plays the Job controller for an Indexed Job (`completionMode: Indexed`): creates one
    /// Pod per index from the template (Pending, scheduled), labelled and annotated with its
    /// index and with the hostname `<job>-<index>`, and marks the Job started. Returns the
    /// Pods' names, by index.
    pub fn start_indexed_job_pods(&self, namespace: &str, job: &str) -> Vec<String> {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let job_value = self.stored_job(namespace, job);
        assert_eq!(job_value["spec"]["completionMode"], "Indexed");
        let completions = job_value["spec"]["completions"]
            .as_u64()
            .expect("completions");
        let template = &job_value["spec"]["template"];
        let now = self.now_string();
        let names: Vec<String> = (0..completions)
            .map(|index| {
                let pod_name = format!("{job}-{index}-x7k2p");
                let mut spec = template["spec"].clone();
                spec["hostname"] = json!(format!("{job}-{index}"));
                let pod = pending_job_pod(
                    &job_value,
                    namespace,
                    &pod_name,
                    json!({COMPLETION_INDEX: index.to_string()}),
                    spec,
                    &now,
                );
                self.put_value(&resource_of::<Pod>(), pod);
                pod_name
            })
            .collect();
        self.modify::<Job>(namespace, job, |j| {
            j["status"]["startTime"] = json!(now);
            j["status"]["active"] = json!(completions);
        });
        names
    }

    /// Plays the scheduler: `pod` cannot be scheduled (`PodScheduled=False`, `Unschedulable`).
    pub fn set_pod_unschedulable(&self, namespace: &str, pod: &str, message: &str) {
        use k8s_openapi::api::core::v1::Pod;
        self.modify::<Pod>(namespace, pod, |p| {
            p["status"] = json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": message}]
            });
        });
    }

    /// Plays the kubelet: the runner container of `pod` waits with `reason`.
    pub fn set_pod_waiting(&self, namespace: &str, pod: &str, reason: &str, message: &str) {
        self.set_container_state(
            namespace,
            pod,
            "Pending",
            json!({"waiting": {"reason": reason, "message": message}}),
        );
    }

    /// Plays the kubelet: the runner container of `pod` runs.
    pub fn set_pod_running(&self, namespace: &str, pod: &str) {
        self.set_container_state(
            namespace,
            pod,
            "Running",
            json!({"running": {"startedAt": self.now_string()}}),
        );
    }

    /// Plays the kubelet: the runner container of `pod` exits with `exit_code`, leaving
    /// `message` as its termination message.
    pub fn terminate_pod(&self, namespace: &str, pod: &str, exit_code: i32, message: &str) {
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.set_container_state(
            namespace,
            pod,
            phase,
            json!({"terminated": {
                "exitCode": exit_code, "reason": reason, "message": message,
                "startedAt": self.now_string(), "finishedAt": self.now_string()
            }}),
        );
    }

    fn set_container_state(&self, namespace: &str, pod: &str, phase: &str, state: Value) {
        use k8s_openapi::api::core::v1::Pod;
        self.modify::<Pod>(namespace, pod, |p| {
            let image = p["spec"]["containers"][0]["image"].clone();
            let name = p["spec"]["containers"][0]["name"].clone();
            p["status"]["phase"] = json!(phase);
            p["status"]["containerStatuses"] = json!([{
                "name": name, "image": image, "imageID": "", "ready": false,
                "restartCount": 0, "state": state
            }]);
        });
    }

    /// Plays the Job controller: Job `namespace/job` ends with condition `Complete` (when
    /// `reason` is `None`) or `Failed` with `reason`.
    pub fn mark_job(&self, namespace: &str, job: &str, reason: Option<&str>) {
        use k8s_openapi::api::batch::v1::Job;
        let now = self.now_string();
        self.modify::<Job>(namespace, job, |j| {
            j["status"]["active"] = json!(0);
            match reason {
                None => {
                    j["status"]["succeeded"] = json!(1);
                    j["status"]["completionTime"] = json!(now);
                    j["status"]["conditions"] = json!([{
                        "type": "Complete", "status": "True", "lastTransitionTime": now
                    }]);
                }
                Some(reason) => {
                    j["status"]["failed"] = json!(1);
                    j["status"]["conditions"] = json!([{
                        "type": "Failed", "status": "True", "reason": reason,
                        "message": format!("Job failed: {reason}"), "lastTransitionTime": now
                    }]);
                }
            }
        });
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Pending, scheduled Pod of the stored Job `job_value`, as the Job controller makes it: the
/// template's labels with `job-name`, plus `index_labels` (also set as annotations: an Indexed
/// Job's completion index), the Job as controlling owner, and `spec`.
fn pending_job_pod(
    job_value: &Value,
    namespace: &str,
    pod_name: &str,
    index_labels: Value,
    spec: Value,
    now: &str,
) -> Value {
    let job = &job_value["metadata"]["name"];
    let mut labels = job_value["spec"]["template"]["metadata"]["labels"].clone();
    labels["job-name"] = job.clone();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": namespace, "labels": labels,
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job,
                "uid": job_value["metadata"]["uid"], "controller": true
            }]
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]
        }
    });
    if let Some(extra) = index_labels.as_object().filter(|m| !m.is_empty()) {
        for (k, v) in extra {
            pod["metadata"]["labels"][k] = v.clone();
        }
        pod["metadata"]["annotations"] = index_labels;
    }
    pod
}
