//! The clients built for endpoints' client certificates, one per distinct pair: a TLS identity
//! belongs to a client (and its connection pool), not to a request. Both routes, direct and
//! through the egress proxy, keep their clients here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use herald_domain::client_certificate::ClientCertificate;
use sha2::{Digest, Sha256};

/// Most clients kept for client certificates; past it the cache starts over (each holds its
/// own connection pool, so it must not grow without bound).
const MAX_CERTIFICATE_CLIENTS: usize = 256;

/// One client of type `T` per distinct client certificate, keyed by the SHA-256 of the pair
/// (so the cache holds no key material itself).
#[derive(Debug)]
pub(super) struct CertificateClients<T> {
    clients: Mutex<HashMap<[u8; 32], T>>,
}

impl<T> Default for CertificateClients<T> {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
        }
    }
}

impl<T: Clone> CertificateClients<T> {
    /// The client that presents `certificate`, built by `build` on first use; `build`'s error
    /// is the attempt's error text.
    pub(super) fn get_or_build(
        &self,
        certificate: &ClientCertificate,
        build: impl FnOnce(&ClientCertificate) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut digest = Sha256::new();
        digest.update(certificate.cert_pem().as_bytes());
        digest.update([0]);
        digest.update(certificate.expose_key_pem().as_bytes());
        let key: [u8; 32] = digest.finalize().into();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = build(certificate)?;
        if clients.len() >= MAX_CERTIFICATE_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}
