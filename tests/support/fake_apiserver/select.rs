//! Parsing what a request asks for: its route, query, and label and field selectors.

use std::collections::BTreeMap;

use serde_json::Value;

pub(super) struct Route {
    pub(super) resource: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

pub(super) fn parse_route(path: &str) -> Option<Route> {
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

pub(super) fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn decode(s: &str) -> String {
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
pub(super) enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

pub(super) fn split_selector(selector: &str) -> Vec<String> {
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

pub(super) fn parse_label_selector(selector: &str) -> Vec<Requirement> {
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

pub(super) fn labels_match(object: &Value, selector: &[Requirement]) -> bool {
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

pub(super) fn fields_match(object: &Value, selector: &str) -> bool {
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
pub(super) struct Filter {
    pub(super) resource: String,
    pub(super) namespace: Option<String>,
    pub(super) labels: Vec<Requirement>,
    pub(super) fields: String,
}

impl Filter {
    pub(super) fn matches(&self, resource: &str, namespace: &str, object: &Value) -> bool {
        resource == self.resource
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && labels_match(object, &self.labels)
            && fields_match(object, &self.fields)
    }
}

#[cfg(test)]
mod self_tests {
    use super::*;
    use serde_json::json;

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
