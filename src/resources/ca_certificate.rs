//! The endpoint's CA certificate in the runner Pod: a volume of the one ConfigMap or Secret key
//! that `endpoint.caCertificate` names, mounted read-only as [`CA_CERTIFICATE_PATH`], the path
//! the run's plan gives the runner as its `endpoint.caCertificate`.
//!
//! It owns where the file is, not whether it exists: the run reconciler checks a ConfigMap
//! before creating the Job, and the kubelet does not start a Pod whose Secret or key is missing
//! (the operator reads no Secrets). Every Pod of a multi-worker run gets the same volume.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, Pod, SecretVolumeSource, Volume, VolumeMount,
};

use crate::crd::{CaCertificateRef, CoeBenchmarkRun};

/// Folder of the CA certificate in the runner container. Its own folder, not one under the
/// plan's `/etc/coebench`: a mount point inside the read-only plan volume could not be created.
pub const CA_CERTIFICATE_DIR: &str = "/etc/coebench-ca";
/// File name of the CA certificate in [`CA_CERTIFICATE_DIR`], whatever the key's name.
pub const CA_CERTIFICATE_FILE: &str = "ca.crt";
/// Full path of the CA certificate in the runner container.
pub const CA_CERTIFICATE_PATH: &str = "/etc/coebench-ca/ca.crt";
/// Name of the CA certificate's volume in the runner Pod (`runner.files` volumes are named
/// `files-<name>`, so they cannot clash with it).
pub const CA_CERTIFICATE_VOLUME: &str = "ca-certificate";

/// The plan's `endpoint.caCertificate`: [`CA_CERTIFICATE_PATH`] when the run names a CA.
pub fn plan_ca_certificate(run: &CoeBenchmarkRun) -> Option<String> {
    run.spec
        .endpoint
        .ca_certificate
        .as_ref()
        .map(|_| CA_CERTIFICATE_PATH.to_string())
}

/// The volume holding only the named key as [`CA_CERTIFICATE_FILE`] (never optional, so the
/// kubelet starts no runner without it), and its read-only mount; none when the run names no CA.
pub fn ca_certificate_volume(run: &CoeBenchmarkRun) -> Option<(Volume, VolumeMount)> {
    let reference = run.spec.endpoint.ca_certificate.as_ref()?;
    let only_the_key = |key: &str| {
        Some(vec![KeyToPath {
            key: key.to_string(),
            path: CA_CERTIFICATE_FILE.into(),
            ..KeyToPath::default()
        }])
    };
    let CaCertificateRef {
        config_map_key_ref,
        secret_key_ref,
    } = reference;
    let volume = Volume {
        name: CA_CERTIFICATE_VOLUME.into(),
        config_map: config_map_key_ref.as_ref().map(|cm| ConfigMapVolumeSource {
            name: cm.name.clone(),
            items: only_the_key(&cm.key),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        secret: secret_key_ref.as_ref().map(|secret| SecretVolumeSource {
            secret_name: Some(secret.name.clone()),
            items: only_the_key(&secret.key),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: CA_CERTIFICATE_VOLUME.into(),
        mount_path: CA_CERTIFICATE_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
}

/// The Secret and key a runner Pod mounts as its CA certificate, as (name, key): what to name
/// when the Pod's container is never created (the kubelet reports a missing volume Secret only
/// in Events, which the operator does not read).
pub fn mounted_ca_secret(pod: &Pod) -> Option<(String, String)> {
    let volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == CA_CERTIFICATE_VOLUME)?;
    let secret = volume.secret.as_ref()?;
    let key = secret.items.iter().flatten().next()?.key.clone();
    Some((secret.secret_name.clone()?, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ConfigMapKeyRef, SecretKeyRef};
    use crate::resources::job::tests::sample_run;
    use k8s_openapi::api::core::v1::PodSpec;

    fn with_ca(reference: CaCertificateRef) -> CoeBenchmarkRun {
        let mut run = sample_run();
        run.spec.endpoint.ca_certificate = Some(reference);
        run
    }

    fn from_config_map() -> CaCertificateRef {
        CaCertificateRef {
            config_map_key_ref: Some(ConfigMapKeyRef {
                name: "corp-ca".into(),
                key: "root.pem".into(),
            }),
            secret_key_ref: None,
        }
    }

    fn from_secret() -> CaCertificateRef {
        CaCertificateRef {
            config_map_key_ref: None,
            secret_key_ref: Some(SecretKeyRef {
                name: "vllm-tls".into(),
                key: "ca.crt".into(),
            }),
        }
    }

    #[test]
    fn no_ca_means_no_volume_and_no_plan_path() {
        let run = sample_run();
        assert_eq!(ca_certificate_volume(&run), None);
        assert_eq!(plan_ca_certificate(&run), None);
    }

    #[test]
    fn a_config_map_key_is_mounted_alone_as_the_plans_file() {
        let run = with_ca(from_config_map());
        let (volume, mount) = ca_certificate_volume(&run).unwrap();
        let source = volume.config_map.unwrap();
        assert_eq!(source.name, "corp-ca");
        assert_eq!(source.optional, Some(false));
        let items = source.items.unwrap();
        assert_eq!(
            (items.len(), items[0].key.as_str(), items[0].path.as_str()),
            (1, "root.pem", CA_CERTIFICATE_FILE)
        );
        assert!(volume.secret.is_none());
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(
            format!("{}/{CA_CERTIFICATE_FILE}", mount.mount_path),
            CA_CERTIFICATE_PATH
        );
        assert_eq!(
            plan_ca_certificate(&run).as_deref(),
            Some(CA_CERTIFICATE_PATH)
        );
    }

    #[test]
    fn a_secret_key_is_mounted_and_named_back_from_the_pod() {
        let run = with_ca(from_secret());
        let (volume, _) = ca_certificate_volume(&run).unwrap();
        let source = volume.secret.clone().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("vllm-tls"));
        assert_eq!(source.optional, Some(false));
        assert!(volume.config_map.is_none());
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![volume]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(
            mounted_ca_secret(&pod),
            Some(("vllm-tls".to_string(), "ca.crt".to_string()))
        );
        let (config_map_volume, _) = ca_certificate_volume(&with_ca(from_config_map())).unwrap();
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![config_map_volume]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(mounted_ca_secret(&pod), None);
    }
}
