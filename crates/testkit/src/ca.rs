//! A certificate authority made for one test or run (rcgen), and leaves it signs for the
//! receivers. Herald trusts the CA through `HERALD_EXTRA_ROOT_CERTS` (or the checked
//! configuration's `extra_root_certs`); a receiver serves a leaf, never the CA itself, because
//! webpki refuses a CA certificate used as a server's own.

use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority trusted by test clients through `extra_root_certs_pem`.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A leaf certificate and its key, in PEM.
pub struct Leaf {
    certificate_pem: String,
    key_pem: String,
}

impl TestCa {
    /// A fresh CA with a distinct subject.
    pub fn new() -> Self {
        // Both the client (through reqwest) and axum-server pick the process default provider;
        // installing ring is idempotent enough: a second install only returns an error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        // A distinct subject per CA, so a stranger's leaf names an issuer nobody trusts.
        let serial: u64 = rand::random();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Herald test CA {serial:016x}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).expect("self-sign CA");
        Self { certificate, key }
    }

    /// The CA certificate, PEM, for `HERALD_EXTRA_ROOT_CERTS`.
    pub fn root_pem(&self) -> Vec<u8> {
        self.certificate.pem().into_bytes()
    }

    /// Writes the CA certificate into `dir` as `test-ca.pem`, for `HERALD_EXTRA_ROOT_CERTS`;
    /// its path.
    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, self.certificate.pem()).expect("write the CA certificate");
        path
    }

    /// A leaf for `names` (DNS names or IP addresses) signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("sign leaf");
        Leaf {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The usual leaf, valid for every loopback spelling the tests dial.
    pub fn loopback_leaf(&self) -> Leaf {
        self.leaf(&["localhost", "127.0.0.1", "::1"])
    }
}

impl Leaf {
    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The TLS configuration of a receiver that serves this leaf and demands a client
    /// certificate signed by the CA whose root is `client_root_pem` (mutual TLS).
    pub fn rustls_config_requiring_clients(self, client_root_pem: &[u8]) -> RustlsConfig {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(client_root_pem) {
            roots
                .add(root.expect("a root made here"))
                .expect("a usable root");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::clone(&provider),
        )
        .build()
        .expect("a client verifier");
        let chain = CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("a leaf made here");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("its key");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("a server configuration");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        RustlsConfig::from_config(std::sync::Arc::new(config))
    }

    /// The TLS configuration of a receiver that serves this leaf.
    pub async fn rustls_config(self) -> RustlsConfig {
        RustlsConfig::from_pem(self.certificate_pem.into_bytes(), self.key_pem.into_bytes())
            .await
            .expect("a leaf made here is valid PEM")
    }
}
