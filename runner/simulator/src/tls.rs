//! HTTPS: the server side of TLS from a [`TlsSetting`]: a self-signed certificate generated at
//! start (rcgen, ECDSA P-256) or a given chain and key read from PEM files, served by rustls
//! with the ring provider (TLS 1.2 and 1.3, ALPN `http/1.1`).
//!
//! TLS sits *above* each connection's
//! [`TimestampedStream`](coebench_support::socket_time::TimestampedStream) (`server.rs`): the
//! TLS layer reads the encrypted records from the timestamped socket, so a request's truth
//! (`received_unix_us`) stays the kernel's receive time of the bytes that carried its head,
//! whatever decryption and the runtime cost afterwards. Nothing here touches connections.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::SimulatorError;
use super::config::TlsSetting;

/// The names every generated certificate is valid for.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What a TLS-serving simulator needs: the acceptor and the certificate clients should trust.
pub(crate) struct ServerTls {
    /// Wraps each accepted connection.
    pub acceptor: TlsAcceptor,
    /// The served certificate chain, PEM.
    pub certificate_pem: String,
}

/// Builds the server's TLS from `setting`; a generated certificate is written to its
/// `cert_out`, if any. Errors name the file or name at fault and the fix.
pub(crate) fn server_tls(setting: &TlsSetting) -> Result<ServerTls, SimulatorError> {
    let (chain, key, certificate_pem) = match setting {
        TlsSetting::Generated { names, cert_out } => {
            let (chain, key, pem) = generate(names)?;
            if let Some(path) = cert_out {
                std::fs::write(path, &pem).map_err(|e| {
                    SimulatorError::Tls(format!(
                        "cannot write the generated certificate to {}: {e}; pass a writable \
                         path to --tls-cert-out (its folder must exist)",
                        path.display()
                    ))
                })?;
            }
            (chain, key, pem)
        }
        TlsSetting::Files { cert, key } => {
            let (chain, pem) = read_chain(cert)?;
            (chain, read_key(key)?, pem)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimulatorError::Tls(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            SimulatorError::Tls(format!(
                "the TLS certificate and key cannot be served together: {e}; pass the key that \
                 belongs to the certificate (--tls-key) and a certificate rustls accepts \
                 (--tls-cert)"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate_pem,
    })
}

/// A self-signed certificate for [`LOCAL_NAMES`] and `names`: its chain, key and PEM.
fn generate(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String), SimulatorError> {
    let mut all: Vec<String> = LOCAL_NAMES.iter().map(|n| (*n).to_string()).collect();
    for name in names {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let certified = rcgen::generate_simple_self_signed(all).map_err(|e| {
        SimulatorError::Tls(format!(
            "cannot generate a certificate for {}: {e}; each --tls-name must be a DNS name or \
             an IP address",
            names.join(", ")
        ))
    })?;
    let pem = certified.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    Ok((vec![certified.cert.der().clone()], key, pem))
}

/// Reads `path` whole; the error names it and the flag to fix.
fn read(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>, SimulatorError> {
    std::fs::read(path).map_err(|e| {
        SimulatorError::Tls(format!(
            "cannot read the TLS {what} {}: {e}; pass an existing, readable PEM file to {flag}",
            path.display()
        ))
    })
}

/// The certificates of a PEM file, and its text.
fn read_chain(path: &Path) -> Result<(Vec<CertificateDer<'static>>, String), SimulatorError> {
    let bytes = read(path, "certificate", "--tls-cert")?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SimulatorError::Tls(format!(
                "TLS certificate {} is not valid PEM: {e}; pass the certificate chain as PEM \
                 (-----BEGIN CERTIFICATE-----) to --tls-cert",
                path.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(SimulatorError::Tls(format!(
            "TLS certificate {} holds no certificate; pass the certificate chain as PEM \
             (-----BEGIN CERTIFICATE-----) to --tls-cert",
            path.display()
        )));
    }
    Ok((chain, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, SimulatorError> {
    let bytes = read(path, "private key", "--tls-key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        SimulatorError::Tls(format!(
            "TLS private key {} holds no usable PEM private key ({e}); pass the certificate's \
             key (-----BEGIN PRIVATE KEY-----, RSA or EC) to --tls-key",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_written_and_can_be_served_again_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("cert.pem");
        let tls = server_tls(&TlsSetting::Generated {
            names: vec!["sim.example".into(), "10.1.2.3".into()],
            cert_out: Some(out.clone()),
        })
        .unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written, tls.certificate_pem);
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));

        // Its own key is not written anywhere: serving from files needs a key file.
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        let err = server_tls(&TlsSetting::Files {
            cert: out.clone(),
            key: key.clone(),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("key.pem") && err.contains("--tls-key"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_wrong_files_and_bad_names_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = server_tls(&TlsSetting::Files {
            cert: missing.clone(),
            key: missing.clone(),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("missing.pem") && err.contains("--tls-cert"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let err = server_tls(&TlsSetting::Files {
            cert: empty.clone(),
            key: empty,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("holds no certificate"), "{err}");

        let err = server_tls(&TlsSetting::Generated {
            names: vec!["naïve.example".into()],
            cert_out: None,
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--tls-name"), "{err}");

        let err = server_tls(&TlsSetting::Generated {
            names: Vec::new(),
            cert_out: Some(dir.path().join("no/such/dir/cert.pem")),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--tls-cert-out"), "{err}");
    }
}
