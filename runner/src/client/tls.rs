//! The client's TLS configuration: rustls with the ring provider (TLS 1.2 and 1.3), trusting
//! the webpki roots plus, when the endpoint names one, a CA certificate file (plan
//! `endpoint.caCertificate`, `coebench run --ca-certificate`, or `SSL_CERT_FILE`): a private
//! CA's certificate or a server's self-signed one, such as `coebench simulate --tls
//! --tls-cert-out FILE` writes. Verification is never turned off.
//!
//! It only builds the configuration; [`super::transport`] layers TLS above the timestamped
//! socket ([`super::connector`]), so the stamps are those of the encrypted bytes.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ClientError;

/// The client's TLS configuration: the webpki roots, plus the certificates of `ca_certificate`.
pub(crate) fn client_config(
    ca_certificate: Option<&Path>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_certificate {
        let added = add_certificates(&mut roots, path)?;
        tracing::debug!(file = %path.display(), certificates = added, "trusting the endpoint's CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Adds every certificate of the PEM file `path` to `roots`; fails when the file cannot be
/// read or holds no usable certificate. Returns how many were added.
fn add_certificates(roots: &mut RootCertStore, path: &Path) -> Result<usize, ClientError> {
    let problem = |reason: String| ClientError::CaCertificate {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| problem(format!("cannot read it: {e}")))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(format!("it is not valid PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(problem(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(problem(format!(
            "none of its {ignored} certificates can be a trust anchor"
        )));
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_garbled_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let err = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("missing-ca.pem") && err.contains("cannot read it"),
            "{err}"
        );
        assert!(
            err.contains("caCertificate") && err.contains("SSL_CERT_FILE"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );

        let garbled = dir.path().join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = client_config(Some(&garbled)).unwrap_err().to_string();
        assert!(err.contains("garbled.pem"), "{err}");
    }
}
