//! An endpoint's client certificate for mutual TLS (docs/api.md#client-certificates): presented
//! when the receiver asks for one. The pair is write-only: sealed at rest like a secret, and
//! answers show only its [`CertificateSummary`]. (Checking that a pair is well formed and
//! belongs together is the API's, with rustls.)

use std::fmt;

use crate::time::Timestamp;

/// A PEM certificate chain and its private key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    cert_pem: String,
    key_pem: String,
}

impl ClientCertificate {
    /// A pair already checked (or read back from storage).
    pub fn new(cert_pem: String, key_pem: String) -> Self {
        Self { cert_pem, key_pem }
    }

    /// The certificate chain, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM: to hand to the TLS client, nowhere else.
    pub fn expose_key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCertificate(<redacted>)")
    }
}

/// What answers show of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The leaf certificate's subject, RFC 4514 (`CN=herald-client,O=Acme`).
    pub subject: String,
    /// When the leaf certificate expires.
    pub not_after: Timestamp,
}
