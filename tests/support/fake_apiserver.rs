//! An in-process, stateful fake Kubernetes API server, good enough for the real
//! `kube::runtime::Controller` to run against it with no cluster.
//!
//! It serves a `kube::Client` through `tower::service_fn` (no sockets) and keeps every object in
//! a store keyed by (apiVersion/plural, namespace, name), with a cluster-wide resourceVersion
//! counter like etcd's. Verbs:
//! - GET one object; LIST with `labelSelector` (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`) and
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`), across namespaces too;
//! - WATCH (`?watch=true`): newline-delimited ADDED/MODIFIED/DELETED events after the requested
//!   `resourceVersion` (replayed from history, then live), plus a BOOKMARK when asked;
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
//! logged ([`FakeApiServer::requests`]).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::broadcast;

type Body = UnsyncBoxBody<Bytes, Infallible>;

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

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    resource: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct StoredEvent {
    rv: u64,
    resource: String,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    history: Vec<StoredEvent>,
    requests: Vec<RequestRecord>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<StoredEvent>,
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

fn now_string() -> String {
    Timestamp::now().to_string()
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

/// A parsed request path.
struct Route {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match *segs.first()? {
        "api" => (segs.get(1)?.to_string(), &segs[2..]),
        "apis" => (format!("{}/{}", segs.get(1)?, segs.get(2)?), &segs[3..]),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Route {
        resource: format!("{api_version}/{}", rest.first()?),
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One requirement of a label selector.
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

fn split_selector(selector: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label_selector(selector: &str) -> Vec<Requirement> {
    let set = |s: &str| -> Vec<String> {
        s.trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|v| v.trim().to_string())
            .collect()
    };
    split_selector(selector)
        .into_iter()
        .map(|p| {
            if let Some((k, v)) = p.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v))
            } else if let Some((k, v)) = p.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v))
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else {
                Requirement::Exists(p)
            }
        })
        .collect()
}

fn labels_match(object: &Value, selector: &[Requirement]) -> bool {
    let labels = &object["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    selector.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
        Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
    })
}

fn fields_match(object: &Value, selector: &str) -> bool {
    split_selector(selector).iter().all(|p| {
        let (k, v, negate) = match p.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match p.split_once("==").or_else(|| p.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return true,
            },
        };
        let actual = match k.trim() {
            "metadata.name" => object["metadata"]["name"].as_str(),
            "metadata.namespace" => object["metadata"]["namespace"].as_str(),
            _ => return true,
        };
        (actual == Some(v.trim())) != negate
    })
}

/// Filters of a LIST or WATCH.
struct Filter {
    resource: String,
    namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: String,
}

impl Filter {
    fn matches(&self, resource: &str, namespace: &str, object: &Value) -> bool {
        resource == self.resource
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && labels_match(object, &self.labels)
            && fields_match(object, &self.fields)
    }
}

impl State {
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
        if let Some(uid) = object["metadata"]["uid"].as_str() {
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
        meta["creationTimestamp"] = json!(now_string());
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
        FakeApiServer {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events,
            }),
        }
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

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("fake state lock")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().requests.clone()
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

    /// Plays the Job controller: creates the runner Pod of Job `namespace/job` from its
    /// template (Pending, scheduled) and marks the Job started. Returns the Pod's name.
    pub fn start_job_pod(&self, namespace: &str, job: &str) -> String {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let job_value = {
            let key = Key {
                resource: resource_of::<Job>(),
                namespace: namespace.into(),
                name: job.into(),
            };
            self.state()
                .objects
                .get(&key)
                .cloned()
                .expect("the Job exists")
        };
        let template = &job_value["spec"]["template"];
        let pod_name = format!("{job}-x7k2p");
        let mut labels = template["metadata"]["labels"].clone();
        labels["job-name"] = json!(job);
        let now = now_string();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": pod_name, "namespace": namespace, "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": job,
                    "uid": job_value["metadata"]["uid"], "controller": true
                }]
            },
            "spec": template["spec"],
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]
            }
        });
        self.put_value(&resource_of::<Pod>(), pod);
        self.modify::<Job>(namespace, job, |j| {
            j["status"]["startTime"] = json!(now);
            j["status"]["active"] = json!(1);
        });
        pod_name
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
            json!({"running": {"startedAt": now_string()}}),
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
                "startedAt": now_string(), "finishedAt": now_string()
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
        let now = now_string();
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

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .expect("valid response")
}

fn error(code: u16, reason: &str, message: String) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).expect("valid code"),
        &status_body(code, reason, message),
    )
}

async fn handle(inner: &Arc<Inner>, req: Request<kube::client::Body>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = dispatch(inner, &method, &path, &query, &content_type, &body);
    inner
        .state
        .lock()
        .expect("lock")
        .requests
        .push(RequestRecord {
            method: method.to_string(),
            path,
            query,
            status: response.status().as_u16(),
        });
    response
}

fn dispatch(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Body> {
    let Some(route) = parse_route(path) else {
        return error(404, "NotFound", format!("the fake serves no {path}"));
    };
    let params = query_params(query);
    let parsed_body = || -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
    };
    let key = |name: &str| Key {
        resource: route.resource.clone(),
        namespace: route.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    };
    let kind = kind_of(plural_of(&route.resource));
    let not_found = |name: &str| error(404, "NotFound", format!("{kind} {name:?} not found"));
    let events = &inner.events;
    match (method, route.name.as_deref(), route.subresource.as_deref()) {
        (&Method::GET, None, None)
            if params.get("watch").is_some_and(|w| w == "true" || w == "1") =>
        {
            watch(inner, &route, &params)
        }
        (&Method::GET, None, None) => {
            let filter = filter_of(&route, &params);
            let state = inner.state.lock().expect("lock");
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|(k, v)| filter.matches(&k.resource, &k.namespace, v))
                .map(|(_, v)| v.clone())
                .collect();
            respond(
                StatusCode::OK,
                &json!({
                    "apiVersion": api_version_of(&route.resource),
                    "kind": format!("{kind}List"),
                    "metadata": {"resourceVersion": state.rv.to_string()},
                    "items": items
                }),
            )
        }
        (&Method::GET, Some(name), _) => {
            match inner.state.lock().expect("lock").objects.get(&key(name)) {
                Some(v) => respond(StatusCode::OK, v),
                None => not_found(name),
            }
        }
        (&Method::POST, None, None) => {
            let mut object = match parsed_body() {
                Ok(v) => v,
                Err(m) => return error(400, "BadRequest", m),
            };
            let mut state = inner.state.lock().expect("lock");
            let name = match object["metadata"]["name"].as_str() {
                Some(n) => n.to_string(),
                None => match object["metadata"]["generateName"].as_str() {
                    Some(prefix) => format!("{prefix}{:05}", state.uid + 1),
                    None => return error(422, "Invalid", "metadata.name: Required value".into()),
                },
            };
            let k = key(&name);
            if state.objects.contains_key(&k) {
                return error(
                    409,
                    "AlreadyExists",
                    format!("{kind} {name:?} already exists"),
                );
            }
            if has_status_subresource(plural_of(&route.resource))
                && let Some(o) = object.as_object_mut()
            {
                o.remove("status");
            }
            let object = state.prepare_new(&k, object);
            let stored = state.store(events, &k, object);
            respond(StatusCode::CREATED, &stored)
        }
        (&Method::PUT, Some(name), sub) => {
            let object = match parsed_body() {
                Ok(v) => v,
                Err(m) => return error(400, "BadRequest", m),
            };
            let k = key(name);
            let mut state = inner.state.lock().expect("lock");
            let Some(existing) = state.objects.get(&k).cloned() else {
                return not_found(name);
            };
            if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
                && Some(rv) != existing["metadata"]["resourceVersion"].as_str()
            {
                return error(
                    409,
                    "Conflict",
                    format!(
                        "the object has been modified; {kind} {name:?} is at a newer resourceVersion"
                    ),
                );
            }
            let mut new = existing.clone();
            if sub == Some("status") {
                new["status"] = object["status"].clone();
            } else {
                new = object;
                for field in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                ] {
                    new["metadata"][field] = existing["metadata"][field].clone();
                }
                if has_status_subresource(plural_of(&route.resource)) {
                    new["status"] = existing["status"].clone();
                }
                if spec_changed(&existing, &new) {
                    new["metadata"]["generation"] =
                        json!(existing["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
                }
            }
            strip_nulls(&mut new);
            new["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"].clone();
            if new == existing {
                return respond(StatusCode::OK, &existing);
            }
            let stored = state.store(events, &k, new);
            respond(StatusCode::OK, &stored)
        }
        (&Method::PATCH, Some(name), sub) => {
            let patch = match parsed_body() {
                Ok(v) => v,
                Err(m) => return error(400, "BadRequest", m),
            };
            let k = key(name);
            let mut state = inner.state.lock().expect("lock");
            let apply = content_type.starts_with("application/apply-patch");
            let existing = match state.objects.get(&k).cloned() {
                Some(v) => v,
                None if apply && sub.is_none() => {
                    let object = state.prepare_new(&k, patch);
                    let stored = state.store(events, &k, object);
                    return respond(StatusCode::CREATED, &stored);
                }
                None => return not_found(name),
            };
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && Some(rv) != existing["metadata"]["resourceVersion"].as_str()
            {
                return error(
                    409,
                    "Conflict",
                    format!(
                        "the object has been modified; {kind} {name:?} is at a newer resourceVersion"
                    ),
                );
            }
            let mut patched = existing.clone();
            if content_type.starts_with("application/json-patch") {
                let ops: json_patch::Patch = match serde_json::from_value(patch) {
                    Ok(p) => p,
                    Err(e) => return error(400, "BadRequest", format!("bad JSON patch: {e}")),
                };
                if let Err(e) = json_patch::patch(&mut patched, &ops) {
                    return error(422, "Invalid", format!("JSON patch failed: {e}"));
                }
            } else {
                merge(&mut patched, &patch);
            }
            let mut new = existing.clone();
            if sub == Some("status") {
                new["status"] = patched["status"].clone();
            } else {
                new = patched;
                for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                    new["metadata"][field] = existing["metadata"][field].clone();
                }
                if has_status_subresource(plural_of(&route.resource)) {
                    new["status"] = existing["status"].clone();
                }
                if spec_changed(&existing, &new) {
                    new["metadata"]["generation"] =
                        json!(existing["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
                }
            }
            new["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"].clone();
            strip_nulls(&mut new);
            if new == existing {
                return respond(StatusCode::OK, &existing);
            }
            let stored = state.store(events, &k, new);
            respond(StatusCode::OK, &stored)
        }
        (&Method::DELETE, Some(name), None) => {
            let k = key(name);
            let mut state = inner.state.lock().expect("lock");
            let Some(existing) = state.objects.get(&k).cloned() else {
                return not_found(name);
            };
            let finalizers = existing["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if finalizers {
                let mut marked = existing;
                if marked["metadata"]["deletionTimestamp"].is_null() {
                    marked["metadata"]["deletionTimestamp"] = json!(now_string());
                    marked = state.store(events, &k, marked);
                }
                return respond(StatusCode::OK, &marked);
            }
            let removed = state.remove(events, &k).expect("exists");
            respond(StatusCode::OK, &removed)
        }
        _ => error(
            405,
            "MethodNotAllowed",
            format!("the fake does not serve {method} {path}"),
        ),
    }
}

/// Drops `null` members the way the API server does not store them (Option::None fields).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn filter_of(route: &Route, params: &BTreeMap<String, String>) -> Filter {
    Filter {
        resource: route.resource.clone(),
        namespace: route.namespace.clone(),
        labels: parse_label_selector(
            params
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or(""),
        ),
        fields: params.get("fieldSelector").cloned().unwrap_or_default(),
    }
}

fn watch(inner: &Arc<Inner>, route: &Route, params: &BTreeMap<String, String>) -> Response<Body> {
    let filter = filter_of(route, params);
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    // Snapshot the history and subscribe under one lock: no event is missed or repeated.
    let (backlog, receiver, current_rv) = {
        let state = inner.state.lock().expect("lock");
        let backlog: VecDeque<StoredEvent> = state
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        (backlog, inner.events.subscribe(), state.rv)
    };
    let mut first: VecDeque<Bytes> = backlog
        .into_iter()
        .filter(|e| filter.matches(&e.resource, &e.namespace, &e.object))
        .map(|e| line(e.type_, &e.object))
        .collect();
    if bookmarks {
        let bookmark = json!({
            "kind": kind_of(plural_of(&route.resource)),
            "apiVersion": api_version_of(&route.resource),
            "metadata": {"resourceVersion": current_rv.to_string()}
        });
        first.push_back(line("BOOKMARK", &bookmark));
    }
    let live = futures::stream::unfold((receiver, filter), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if filter.matches(&e.resource, &e.namespace, &e.object) => {
                    return Some((line(e.type_, &e.object), (rx, filter)));
                }
                Ok(_) => continue,
                // Lagging or closed: end the watch; the client re-lists.
                Err(_) => return None,
            }
        }
    });
    let stream = futures::stream::iter(first)
        .chain(live)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .expect("valid response")
}

fn line(type_: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": type_, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
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

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn routes_and_selectors_parse() {
        let r = parse_route("/apis/batch/v1/namespaces/ns/jobs/j/status").unwrap();
        assert_eq!(
            (
                r.resource.as_str(),
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("batch/v1/jobs", Some("ns"), Some("j"), Some("status"))
        );
        let r = parse_route("/api/v1/pods").unwrap();
        assert_eq!((r.resource.as_str(), r.namespace), ("v1/pods", None));
        let obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        assert!(labels_match(&obj, &parse_label_selector("a=1,b")));
        assert!(labels_match(&obj, &parse_label_selector("a in (1,3),!c")));
        assert!(!labels_match(&obj, &parse_label_selector("a!=1")));
        assert_eq!(decode("a%3Db%2Cc"), "a=b,c");
    }
}
