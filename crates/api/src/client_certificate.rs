//! Checking an endpoint's client certificate (docs/api.md#client-certificates): a PEM
//! certificate chain and its unencrypted private key (PKCS#8, PKCS#1 RSA or SEC1 EC) that
//! belong together, parsed by rustls and `x509-cert` — never by hand.

use herald_domain::Timestamp;
use herald_domain::client_certificate::{CertificateSummary, ClientCertificate};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// Largest accepted `cert_pem` or `key_pem`, in bytes: room for a chain of a few certificates.
pub const MAX_PEM_BYTES: usize = 32 * 1024;

/// Checks `cert_pem` and `key_pem` and returns the pair with what answers show of it: the
/// subject and expiry of the first (leaf) certificate.
pub fn check_client_certificate(
    cert_pem: &str,
    key_pem: &str,
) -> Result<(ClientCertificate, CertificateSummary), String> {
    if cert_pem.len() > MAX_PEM_BYTES || key_pem.len() > MAX_PEM_BYTES {
        return Err(format!(
            "cert_pem and key_pem must each be at most {MAX_PEM_BYTES} bytes"
        ));
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "cert_pem must be PEM certificates (BEGIN CERTIFICATE)".to_owned())?;
    let Some(leaf) = chain.first() else {
        return Err("cert_pem must hold at least one certificate".to_owned());
    };
    if key_pem.contains("ENCRYPTED") {
        return Err("key_pem must not be encrypted: Herald seals it at rest itself".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        "key_pem must be an unencrypted PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)".to_owned()
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        "key_pem is not an RSA, ECDSA or Ed25519 key rustls can sign with".to_owned()
    })?;
    CertifiedKey::new(chain.clone(), signing_key)
        .keys_match()
        .map_err(|_| "key_pem does not belong to the first certificate of cert_pem".to_owned())?;
    let parsed = Certificate::from_der(leaf.as_ref())
        .map_err(|_| "cert_pem's first certificate cannot be read as X.509".to_owned())?;
    let tbs = &parsed.tbs_certificate;
    let not_after = tbs.validity.not_after.to_unix_duration();
    let not_after =
        Timestamp::from_micros(i64::try_from(not_after.as_micros()).unwrap_or(i64::MAX));
    Ok((
        ClientCertificate::new(cert_pem.to_owned(), key_pem.to_owned()),
        CertificateSummary {
            subject: tbs.subject.to_string(),
            not_after,
        },
    ))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};

    use super::*;

    /// An RSA key made with `openssl genrsa 2048` for these tests only (ring, under rcgen,
    /// cannot generate RSA keys; it can sign with one).
    const TEST_ONLY_RSA_KEY: &str = include_str!("client_certificate/test-only-rsa-2048.key.pem");

    fn pair(algorithm: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = if algorithm == &PKCS_RSA_SHA256 {
            KeyPair::from_pem_and_sign_algo(TEST_ONLY_RSA_KEY, algorithm).expect("the RSA key")
        } else {
            KeyPair::generate_for(algorithm).expect("a key")
        };
        let mut params = CertificateParams::new(vec!["client.example".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "herald-client");
        let certificate = params.self_signed(&key).expect("a certificate");
        (certificate.pem(), key.serialize_pem())
    }

    #[test]
    fn matching_ecdsa_and_rsa_pairs_are_accepted_with_their_subject() {
        for algorithm in [&PKCS_ECDSA_P256_SHA256, &PKCS_RSA_SHA256] {
            let (cert, key) = pair(algorithm);
            let (_, summary) = check_client_certificate(&cert, &key).expect("a valid pair");
            assert_eq!(summary.subject, "CN=herald-client");
            assert!(summary.not_after > Timestamp::now());
        }
    }

    #[test]
    fn mismatched_encrypted_and_malformed_pairs_are_refused() {
        let (cert, _) = pair(&PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = pair(&PKCS_ECDSA_P256_SHA256);
        assert!(
            check_client_certificate(&cert, &other_key)
                .unwrap_err()
                .contains("does not belong")
        );
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(
            check_client_certificate(&cert, encrypted)
                .unwrap_err()
                .contains("encrypted")
        );
        let (_, key) = pair(&PKCS_ECDSA_P256_SHA256);
        assert!(check_client_certificate("not pem", &key).is_err());
        assert!(check_client_certificate("", &key).is_err());
        assert!(check_client_certificate(&cert, "not a key").is_err());
        assert!(check_client_certificate(&cert, &"k".repeat(MAX_PEM_BYTES + 1)).is_err());
    }
}
