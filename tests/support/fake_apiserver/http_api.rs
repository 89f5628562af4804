//! The HTTP side of the fake: routing a request to a verb, and each verb against the store.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::select::{Filter, Route, parse_label_selector, parse_route, query_params};
use super::{
    Body, Inner, Key, RequestRecord, StoredEvent, api_version_of, has_status_subresource, kind_of,
    merge, plural_of, spec_changed, status_body,
};

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

pub(super) async fn handle(inner: &Arc<Inner>, req: Request<kube::client::Body>) -> Response<Body> {
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
            if let Some(invalid) = invalid_job(kind, &name, &object) {
                return error(422, "Invalid", invalid);
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
                    marked["metadata"]["deletionTimestamp"] = json!(state.now_string());
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
    let (backlog, receiver, closes, current_rv, delay) = {
        let mut state = inner.state.lock().expect("lock");
        if since != 0 && since < state.compacted_rv {
            // As the real API server: 200, then one ERROR event carrying a 410 Status.
            state.expired_watches += 1;
            let gone = status_body(
                410,
                "Expired",
                format!("too old resource version: {since} ({})", state.compacted_rv),
            );
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Full::new(line("ERROR", &gone)).boxed_unsync())
                .expect("valid response");
        }
        let delay = state.watch_delays.get(&route.resource).copied();
        let backlog: VecDeque<StoredEvent> = state
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        (
            backlog,
            inner.events.subscribe(),
            inner.closes.subscribe(),
            state.rv,
            delay,
        )
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
    let live = futures::stream::unfold(
        (receiver, closes, filter),
        move |(mut rx, mut closes, filter)| async move {
            loop {
                let event = tokio::select! {
                    event = rx.recv() => event,
                    _ = closes.recv() => return None,
                };
                match event {
                    Ok(e) if filter.matches(&e.resource, &e.namespace, &e.object) => {
                        if let Some(delay) = delay {
                            tokio::time::sleep_until((e.emitted + delay).into()).await;
                        }
                        return Some((line(e.type_, &e.object), (rx, closes, filter)));
                    }
                    Ok(_) => continue,
                    // Lagging or closed: end the watch; the client re-lists.
                    Err(_) => return None,
                }
            }
        },
    );
    let stream = futures::stream::iter(first)
        .chain(live)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .expect("valid response")
}

/// What the real API server's validation says of a Job it refuses (422): a name that does not
/// fit the 63 characters of the `job-name` label it puts on the Pods, a container without an
/// image. `None` for anything else, and for other kinds.
fn invalid_job(kind: &str, name: &str, job: &Value) -> Option<String> {
    if kind != "Job" {
        return None;
    }
    if name.len() > 63 {
        return Some(format!(
            "Job.batch {name:?} is invalid: spec.template.labels: Invalid value: {name:?}: must be no more than 63 characters"
        ));
    }
    let containers = job["spec"]["template"]["spec"]["containers"].as_array()?;
    containers
        .iter()
        .position(|c| c["image"].as_str().is_none_or(str::is_empty))
        .map(|i| {
            format!(
                "Job.batch {name:?} is invalid: spec.template.spec.containers[{i}].image: Required value"
            )
        })
}

fn line(type_: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": type_, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
