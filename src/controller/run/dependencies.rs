//! What a run's Job needs before it is created: the claims and ConfigMaps its Pods mount, the
//! CA certificate's ConfigMap key included. Each is read once per reconcile; the run reconciler
//! waits for a missing one at most the dependency timeout.
//!
//! Secrets are never read, so that the operator needs no access to them: a missing Secret or
//! key (the API key's, or a CA certificate's) is reported by the kubelet on the Pod and read by
//! [`observe`](crate::controller::observe).

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use kube::Api;

use crate::controller::Context;
use crate::crd::{CoeBenchmarkRun, ConfigMapKeyRef};
use crate::error::{Error, Result};

/// The field that names the CA certificate's ConfigMap key.
const CA_FIELD: &str = "endpoint.caCertificate.configMapKeyRef";
/// Most key names quoted when the CA certificate's key is missing.
const KEYS_QUOTED: usize = 10;

/// The first missing object the run's Job would mount, as (reason, message): the results
/// claim, then the `runner.files` and tokenizer cache volumes, then the CA certificate's
/// ConfigMap key.
pub(super) async fn missing_dependency(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<(&'static str, String)>> {
    if let Some(results) = &run.spec.results {
        let claim = &results.persistent_volume_claim.claim_name;
        if read_claim(ctx, namespace, claim).await?.is_none() {
            return Ok(Some((
                "VolumeClaimNotFound",
                format!(
                    "PersistentVolumeClaim {namespace}/{claim} (results.persistentVolumeClaim) does not exist; create it, or remove spec.results to not keep files"
                ),
            )));
        }
    }
    if let Some(missing) = missing_runner_volume(run, namespace, ctx).await? {
        return Ok(Some(missing));
    }
    missing_ca_certificate(run, namespace, ctx).await
}

/// The first ConfigMap or claim of `runner.files` and `runner.tokenizerCache` that is missing.
async fn missing_runner_volume(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<(&'static str, String)>> {
    let runner = &run.spec.runner;
    let mut claims: Vec<(String, String)> = Vec::new();
    for (i, files) in runner.files.iter().flatten().enumerate() {
        if let Some(config_map) = &files.config_map
            && read_config_map(ctx, namespace, &config_map.name)
                .await?
                .is_none()
        {
            return Ok(Some((
                "ConfigMapNotFound",
                format!(
                    "ConfigMap {namespace}/{} (runner.files[{i}].configMap) does not exist; create it with `kubectl create configmap {} -n {namespace} --from-file=<file>`",
                    config_map.name, config_map.name
                ),
            )));
        }
        if let Some(claim) = &files.persistent_volume_claim {
            claims.push((
                claim.claim_name.clone(),
                format!("runner.files[{i}].persistentVolumeClaim"),
            ));
        }
    }
    if let Some(cache) = &runner.tokenizer_cache {
        claims.push((cache.claim_name.clone(), "runner.tokenizerCache".into()));
    }
    for (claim, field) in claims {
        if read_claim(ctx, namespace, &claim).await?.is_none() {
            return Ok(Some((
                "VolumeClaimNotFound",
                format!(
                    "PersistentVolumeClaim {namespace}/{claim} ({field}) does not exist; create it, or remove {field}"
                ),
            )));
        }
    }
    Ok(None)
}

/// The CA certificate's ConfigMap, or its key, when `endpoint.caCertificate` names a ConfigMap
/// and it is missing or lacks the key.
async fn missing_ca_certificate(
    run: &CoeBenchmarkRun,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<(&'static str, String)>> {
    let reference = run
        .spec
        .endpoint
        .ca_certificate
        .as_ref()
        .and_then(|ca| ca.config_map_key_ref.as_ref());
    let Some(reference) = reference else {
        return Ok(None);
    };
    let found = read_config_map(ctx, namespace, &reference.name).await?;
    Ok(ca_config_map_problem(found.as_ref(), reference, namespace))
}

/// PersistentVolumeClaim `namespace/name`, or `None` when it does not exist.
async fn read_claim(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<PersistentVolumeClaim>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name).await.map_err(Error::kube(format!(
        "read PersistentVolumeClaim {namespace}/{name}"
    )))
}

/// ConfigMap `namespace/name`, or `None` when it does not exist.
async fn read_config_map(ctx: &Context, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    api.get_opt(name)
        .await
        .map_err(Error::kube(format!("read ConfigMap {namespace}/{name}")))
}

/// What keeps `found` from providing the CA certificate's key, as (reason, message); only key
/// names are quoted, never a value.
fn ca_config_map_problem(
    found: Option<&ConfigMap>,
    reference: &ConfigMapKeyRef,
    namespace: &str,
) -> Option<(&'static str, String)> {
    let ConfigMapKeyRef { name, key } = reference;
    let Some(config_map) = found else {
        return Some((
            "ConfigMapNotFound",
            format!(
                "ConfigMap {namespace}/{name} ({CA_FIELD}) does not exist; create it with `kubectl create configmap {name} -n {namespace} --from-file={key}=<CA certificate PEM file>`"
            ),
        ));
    };
    let mut keys: Vec<&str> = config_map
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(config_map.binary_data.iter().flat_map(|d| d.keys()))
        .map(String::as_str)
        .collect();
    if keys.contains(&key.as_str()) {
        return None;
    }
    keys.sort_unstable();
    let has = match keys.len() {
        0 => "no keys".to_string(),
        n if n > KEYS_QUOTED => format!(
            "keys {} and {} more",
            keys[..KEYS_QUOTED].join(", "),
            n - KEYS_QUOTED
        ),
        _ => format!("keys {}", keys.join(", ")),
    };
    Some((
        "ConfigMapKeyNotFound",
        format!(
            "ConfigMap {namespace}/{name} has no key {key:?} ({CA_FIELD}.key; it has {has}); add the PEM certificate under that key, or fix the key"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn reference(key: &str) -> ConfigMapKeyRef {
        ConfigMapKeyRef {
            name: "corp-ca".into(),
            key: key.into(),
        }
    }

    fn config_map(keys: &[&str]) -> ConfigMap {
        ConfigMap {
            data: Some(
                keys.iter()
                    .map(|k| (k.to_string(), PEM.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_missing_config_map_is_named_with_the_command_that_creates_it() {
        let (reason, message) =
            ca_config_map_problem(None, &reference("ca.crt"), "team-a").unwrap();
        assert_eq!(reason, "ConfigMapNotFound");
        assert!(message.contains("ConfigMap team-a/corp-ca"), "{message}");
        assert!(message.contains(CA_FIELD), "{message}");
        assert!(
            message.contains("kubectl create configmap corp-ca -n team-a --from-file=ca.crt="),
            "{message}"
        );
    }

    #[test]
    fn a_missing_key_names_the_keys_there_are_and_never_a_value() {
        let found = config_map(&["root.pem", "bundle.pem"]);
        let (reason, message) =
            ca_config_map_problem(Some(&found), &reference("ca.crt"), "team-a").unwrap();
        assert_eq!(reason, "ConfigMapKeyNotFound");
        assert!(message.contains("no key \"ca.crt\""), "{message}");
        assert!(message.contains("keys bundle.pem, root.pem"), "{message}");
        assert!(!message.contains("BEGIN CERTIFICATE"), "{message}");
        let (_, message) =
            ca_config_map_problem(Some(&ConfigMap::default()), &reference("ca.crt"), "team-a")
                .unwrap();
        assert!(message.contains("it has no keys"), "{message}");
        let many: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (_, message) =
            ca_config_map_problem(Some(&config_map(&many)), &reference("ca.crt"), "team-a")
                .unwrap();
        assert!(message.contains("k09 and 2 more"), "{message}");
    }

    #[test]
    fn the_key_may_be_text_or_binary_data() {
        assert_eq!(
            ca_config_map_problem(Some(&config_map(&["ca.crt"])), &reference("ca.crt"), "ns"),
            None
        );
        let binary = ConfigMap {
            binary_data: Some(BTreeMap::from([(
                "ca.der".to_string(),
                ByteString(vec![0x30, 0x82]),
            )])),
            ..ConfigMap::default()
        };
        assert_eq!(
            ca_config_map_problem(Some(&binary), &reference("ca.der"), "ns"),
            None
        );
    }
}
