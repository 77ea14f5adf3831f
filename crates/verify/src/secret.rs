//! The signing secret a receiver holds, and how it is read from the text Herald showed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A 32-byte signing secret: an endpoint's, or an organization's. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

/// Why a text is not a Herald secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text is not standard base64 (after an optional `whsec_` prefix).
    #[error("secret is not standard base64")]
    NotBase64,
    /// The text decodes, but not to 32 bytes.
    #[error("secret decodes to {found} bytes, not 32")]
    WrongLength {
        /// How many bytes it decoded to.
        found: usize,
    },
}

impl Secret {
    /// The Standard Webhooks prefix of a secret's text form.
    pub const WHSEC_PREFIX: &'static str = "whsec_";

    /// Wraps the raw 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads the secret as Herald shows it (standard base64 of 32 bytes), also accepting the
    /// Standard Webhooks form `whsec_<base64>` and surrounding whitespace (a trailing newline
    /// from a file or an environment variable).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let text = text.strip_prefix(Self::WHSEC_PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(text).map_err(|_| SecretError::NotBase64)?;
        let found = bytes.len();
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| SecretError::WrongLength { found })
    }

    /// The decoded key bytes, which key the HMAC (never the base64 text).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn counting() -> [u8; 32] {
        std::array::from_fn(|index| u8::try_from(index).expect("index below 32"))
    }

    fn check(text: &str, expected: Result<[u8; 32], SecretError>) {
        let parsed = Secret::from_base64(text).map(|secret| *secret.as_bytes());
        assert_eq!(parsed, expected, "{text:?}");
    }

    #[test]
    fn from_base64_accepts_herald_and_whsec_forms() {
        check(TEXT, Ok(counting()));
        check(&format!("whsec_{TEXT}"), Ok(counting()));
        check(&format!("  {TEXT}\n"), Ok(counting()));
    }

    #[test]
    fn from_base64_refuses_other_text() {
        check("not base64!", Err(SecretError::NotBase64));
        check("AAECAw==", Err(SecretError::WrongLength { found: 4 }));
        check("", Err(SecretError::WrongLength { found: 0 }));
        // URL-safe base64 is not what Herald shows.
        check(
            "____________________________________________",
            Err(SecretError::NotBase64),
        );
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = Secret::from_bytes(counting());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
