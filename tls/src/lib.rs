//! PEM files into rustls configurations, written once for every place korvet speaks TLS: the
//! listeners' server configuration (`runtime-common`), the client configuration of its Redis
//! connections (`storage-redis`) and of its admin commands (`cli`). Errors name the file and say
//! what is wrong with it, ready for a log line or a start-up message.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The cryptography every korvet TLS configuration uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, in order; a file with none is an error.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| format!("cannot read the certificates in {}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| format!("cannot read the private key {}: {err}", path.display()))
}

/// The CAs of a PEM file as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|err| format!("CA certificate in {}: {err}", path.display()))?;
    }
    Ok(roots)
}

/// The system's trusted roots (those it cannot parse are left out).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// A client's configuration: it trusts the CAs of `ca_file` (or else the system's roots) and,
/// given a certificate and key file, presents that certificate to servers that ask for one.
pub fn client_config(ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<ClientConfig, String> {
    let roots = match ca_file {
        Some(path) => roots(path)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|err| format!("the certificate {} and key {} do not fit: {err}", cert.display(), key.display())),
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let missing = certificates(Path::new("/nonexistent/cert.pem")).unwrap_err();
        assert!(missing.contains("/nonexistent/cert.pem"), "{missing}");
        let dir = std::env::temp_dir().join(format!("korvet-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(certificates(&empty).unwrap_err(), format!("{} holds no certificate", empty.display()));
        assert!(client_config(Some(&empty), None).is_err());
        assert!(private_key(&empty).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn without_a_ca_file_the_system_roots_are_trusted() {
        assert!(client_config(None, None).is_ok());
    }
}
