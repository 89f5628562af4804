//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager), so that of several
//! replicas only one runs the controllers. The holder renews the Lease every few seconds; when
//! it stops (crash, partition) another replica takes over after the Lease's duration.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Seconds a Lease stays valid without renewal.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// A running election.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task: JoinHandle<std::result::Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    lease: String,
}

/// Joins the election for Lease `namespace/name` as `identity`, with the default timing
/// ([`LEASE_DURATION_SECONDS`], [`LEASE_GRACE_SECONDS`]).
pub async fn join(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<Leadership> {
    join_with(
        client,
        namespace,
        name,
        identity,
        LEASE_DURATION_SECONDS,
        LEASE_GRACE_SECONDS,
    )
    .await
}

/// Like [`join`], with the Lease's duration and renewal grace in seconds (grace < duration).
pub async fn join_with(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration_seconds: u64,
    grace_seconds: u64,
) -> Result<Leadership> {
    let lease = format!("{namespace}/{name}");
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_seconds)
        .with_grace(grace_seconds)
        .with_field_manager(crate::controller::FIELD_MANAGER)
        .build()
        .await
        .map_err(|source| Error::Lease {
            lease: lease.clone(),
            source,
        })?;
    let (leading, task) = manager.watch().await;
    Ok(Leadership {
        leading,
        task,
        lease,
    })
}

impl Leadership {
    /// Waits until this replica leads; `false` when the election ended first.
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|leading| *leading).await.is_ok()
    }

    /// Waits until this replica no longer leads (or the election ended).
    pub async fn lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// The Lease, as `namespace/name`.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// Leaves the election, releasing the Lease if held.
    pub async fn release(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!(lease = %self.lease, "released the leader Lease"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %self.lease, %error, "releasing the leader Lease failed")
            }
            Err(error) => tracing::warn!(lease = %self.lease, %error, "the election task failed"),
        }
    }
}
