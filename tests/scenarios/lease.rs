//! Leader election against the fake API server: one of two replicas leads; when it leaves, the
//! other takes over.

use std::time::Duration;

use coebench_operator::lease;

use super::*;

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_leaves() {
    let fake = FakeApiServer::new();
    let mut first = lease::join_with(fake.client(), NS, "coebench-operator", "replica-a", 2, 1)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, first.acquired())
        .await
        .expect("replica a leads in time");
    let mut second = lease::join_with(fake.client(), NS, "coebench-operator", "replica-b", 2, 1)
        .await
        .unwrap();
    // While a holds the Lease, b stands by.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second.acquired())
            .await
            .is_err()
    );
    first.release().await;
    tokio::time::timeout(Duration::from_secs(30), second.acquired())
        .await
        .expect("replica b takes over after a releases");
    second.release().await;
}
