//! Encryption of secrets (and organizations' signing keys) at rest with XChaCha20-Poly1305 (RustCrypto). A stored secret is
//! `nonce (24 bytes) || ciphertext+tag`; the random 192-bit nonce makes reuse negligible
//! without any counter state shared between nodes.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use herald_domain::{OrgSigningKey, Secret};

use crate::StoreError;

const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the operator's `HERALD_SECRETS_KEY`.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl SecretCipher {
    /// A cipher under a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Encrypts a secret for storage.
    pub fn seal(&self, secret: &Secret) -> Vec<u8> {
        self.seal_bytes(secret.expose_bytes().as_slice())
    }

    /// Decrypts a stored secret; a wrong key or tampered bytes are `StoreError::Corrupt`.
    pub fn open(&self, sealed: &[u8]) -> Result<Secret, StoreError> {
        self.open_32(sealed).map(Secret::from_bytes)
    }

    /// Encrypts an organization's Ed25519 signing key (its 32-byte seed) for storage.
    pub fn seal_signing_key(&self, key: &OrgSigningKey) -> Vec<u8> {
        self.seal_bytes(key.expose_seed().as_slice())
    }

    /// Decrypts a stored signing key's seed, as [`SecretCipher::open`] does a secret.
    pub fn open_signing_key_seed(&self, sealed: &[u8]) -> Result<[u8; 32], StoreError> {
        self.open_32(sealed)
    }

    /// Encrypts any confidential bytes for storage (custom headers and client certificates,
    /// as JSON).
    pub fn seal_bytes(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .aead
            .encrypt(&nonce, plaintext)
            .expect("encrypting bytes in memory cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts what [`SecretCipher::seal_bytes`] sealed; a wrong key or tampered bytes are
    /// `StoreError::Corrupt`.
    pub fn open_bytes(&self, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() <= NONCE_LEN {
            return Err(StoreError::Corrupt("sealed secret too short"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.aead
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| StoreError::Corrupt("secret does not decrypt under the configured key"))
    }

    /// Decrypts 32 sealed bytes (a secret or a key's seed).
    fn open_32(&self, sealed: &[u8]) -> Result<[u8; 32], StoreError> {
        self.open_bytes(sealed)?
            .try_into()
            .map_err(|_| StoreError::Corrupt("decrypted secret is not 32 bytes"))
    }
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_hides_plaintext() {
        let cipher = SecretCipher::new(&[7u8; 32]);
        let secret = Secret::generate();
        let sealed = cipher.seal(&secret);
        assert!(
            !sealed
                .windows(32)
                .any(|window| window == secret.expose_bytes())
        );
        assert_eq!(cipher.open(&sealed).expect("opens"), secret);
    }

    #[test]
    fn wrong_key_or_tampering_is_refused() {
        let secret = Secret::generate();
        let mut sealed = SecretCipher::new(&[7u8; 32]).seal(&secret);
        assert!(SecretCipher::new(&[8u8; 32]).open(&sealed).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(SecretCipher::new(&[7u8; 32]).open(&sealed).is_err());
    }
}
