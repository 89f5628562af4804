//! The operator's error type: every failure a reconciler or the process can meet, each with a
//! short `metric_label()` for the failures metric. Messages quote what failed and say the fix.

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the reconcilers and the operator process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while trying to {action}: {source}")]
    Kube {
        /// What the operator was doing, e.g. `create Job default/bench-1`.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks a field the operator relies on (e.g. a namespace on a namespaced kind).
    #[error(
        "{object} has no {field}; this is set by the API server, so the object did not come from one"
    )]
    MissingField {
        /// The object, as `kind namespace/name`.
        object: String,
        /// The missing field.
        field: &'static str,
    },
    /// Serializing a generated object failed.
    #[error("could not serialize {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// Leader election failed.
    #[error(
        "leader election on Lease {lease} failed: {source}; check the operator may get, create and patch leases"
    )]
    Lease {
        /// The Lease, as `namespace/name`.
        lease: String,
        /// The lease manager's error.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// An object the operator creates exists under its name but belongs to another owner (an
    /// earlier owner of the same name, not yet garbage-collected). Retried until it is gone.
    #[error(
        "{object} already exists but belongs to {owner}, not {expected}; waiting for the garbage collector to delete it"
    )]
    NameTaken {
        /// The object, as `kind namespace/name`.
        object: String,
        /// Its controlling owner's uid (or "no owner").
        owner: String,
        /// The owner it should have.
        expected: String,
    },
    /// Publishing a Kubernetes Event failed.
    #[error("could not publish an Event about {object}: {source}")]
    Event {
        /// The object the Event is about.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A short, bounded label for the `error` label of the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 404 => "kube_not_found",
                kube::Error::Api(status) if status.code == 409 => "kube_conflict",
                kube::Error::Api(status) if status.code == 403 => "kube_forbidden",
                kube::Error::Api(_) => "kube_api",
                _ => "kube_client",
            },
            Error::MissingField { .. } => "missing_field",
            Error::Serialize { .. } => "serialize",
            Error::Event { .. } => "event",
            Error::Lease { .. } => "lease",
            Error::NameTaken { .. } => "name_taken",
        }
    }

    /// The API server's message when it refused a request on its merits: 400 (bad request),
    /// 403 (RBAC, quota, admission) or 422 (invalid). Retrying such a request cannot succeed.
    pub fn rejection(&self) -> Option<&str> {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if matches!(status.code, 400 | 403 | 422) => Some(status.message.as_str()),
            _ => None,
        }
    }

    /// Wraps a client error with what the operator was doing.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_name_the_kind() {
        let forbidden = kube::Error::Api(Box::new(
            kube::core::Status::failure("jobs is forbidden", "Forbidden").with_code(403),
        ));
        let err = Error::kube("create Job default/b-1")(forbidden);
        assert_eq!(err.metric_label(), "kube_forbidden");
        assert!(err.to_string().contains("create Job default/b-1"), "{err}");
        let missing = Error::MissingField {
            object: "CoeBenchmarkRun /x".into(),
            field: "metadata.namespace",
        };
        assert_eq!(missing.metric_label(), "missing_field");
    }
}
