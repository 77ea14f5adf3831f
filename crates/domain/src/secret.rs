//! Signing secrets, API-key tokens and secret settings (the admin token, the secrets key).
//! None of these types prints its value in `Debug`, so a stray `{:?}` in a log line cannot
//! leak one; [`redact_url_password`] does the same for a password inside a URL.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// A 32-byte signing secret (an endpoint's or an organization's).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes, for HMAC and encryption.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The standard-base64 form shown once to the user.
    pub fn expose_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// An API key as the user holds it: `am_live_` followed by 40 base62 characters.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyToken(String);

/// The SHA-256 of an API key: the only form that is stored.
pub type ApiKeyHash = [u8; 32];

impl ApiKeyToken {
    /// Every key starts with this.
    pub const PREFIX: &'static str = "am_live_";
    const RANDOM_LEN: usize = 40;
    const BASE62: &'static [u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// A fresh key from the operating system's CSPRNG (40 base62 characters, ~238 bits).
    pub fn generate() -> Self {
        let mut rng = OsRng;
        let random: String = (0..Self::RANDOM_LEN)
            .map(|_| char::from(Self::BASE62[rng.gen_range(0..Self::BASE62.len())]))
            .collect();
        Self(format!("{}{random}", Self::PREFIX))
    }

    /// Accepts text that has the shape of a key; the shape says nothing about validity.
    pub fn parse(text: &str) -> Option<Self> {
        let random = text.strip_prefix(Self::PREFIX)?;
        let well_formed = (32..=128).contains(&random.len())
            && random.bytes().all(|byte| byte.is_ascii_alphanumeric());
        well_formed.then(|| Self(text.to_owned()))
    }

    /// The stored form.
    pub fn hash(&self) -> ApiKeyHash {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The key itself, for the one response that mints it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-secret hint for listings (`am_live_AbCd…`).
    pub fn hint(&self) -> String {
        format!("{}…", &self.0[..Self::PREFIX.len() + 4])
    }
}

impl fmt::Debug for ApiKeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyToken(<redacted>)")
    }
}

/// A secret setting given as text (the admin token, the secrets key): `Debug` shows
/// `<redacted>`, and only [`SecretText::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an unset variable given as `NAME=`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text))
    }
}

/// `url` with the password of its user information replaced by `<redacted>`
/// (`postgres://herald:<redacted>@db/herald`), for messages and `Debug`. Works on text that is
/// not a valid URL too: whatever stands between the scheme's `//` and the last `@` of the
/// authority, after the first `:`, is the password.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &authority[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:<redacted>{}",
        &url[..authority_start],
        &user_info[..colon],
        &url[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_redacted_and_nothing_else_changes() {
        for (url, redacted) in [
            (
                "postgres://herald:s3cr%40t@db:5432/herald?sslmode=require",
                "postgres://herald:<redacted>@db:5432/herald?sslmode=require",
            ),
            (
                "postgres://a:b:c@d@host/x",
                "postgres://a:<redacted>@host/x",
            ),
            ("postgres://herald@db/herald", "postgres://herald@db/herald"),
            ("postgres://db/herald", "postgres://db/herald"),
            (
                "sqlite://herald-data/herald.db",
                "sqlite://herald-data/herald.db",
            ),
            ("mysql://root:pw@x", "mysql://root:<redacted>@x"),
            ("not a url", "not a url"),
            ("postgres://db/a@b", "postgres://db/a@b"),
        ] {
            assert_eq!(redact_url_password(url), redacted, "{url}");
        }
    }

    #[test]
    fn secret_text_is_redacted() {
        let text: SecretText = "the-admin-token".parse().expect("any text");
        assert_eq!(text.expose(), "the-admin-token");
        assert_eq!(format!("{text:?}"), "SecretText(<redacted>)");
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let first = ApiKeyToken::generate();
        let second = ApiKeyToken::generate();
        assert_ne!(first, second);
        assert_eq!(ApiKeyToken::parse(first.expose()), Some(first.clone()));
        assert_eq!(first.expose().len(), 48);
        assert!(!format!("{first:?}").contains(first.expose()));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(ApiKeyToken::parse("am_live_short").is_none());
        assert!(ApiKeyToken::parse("am_test_0123456789012345678901234567890123").is_none());
        assert!(ApiKeyToken::parse("am_live_0123456789012345678901234567890!").is_none());
    }

    #[test]
    fn secrets_are_32_bytes_of_base64_and_redacted() {
        let secret = Secret::generate();
        let decoded = STANDARD
            .decode(secret.expose_base64())
            .expect("standard base64");
        assert_eq!(decoded.len(), 32);
        assert_ne!(secret, Secret::generate());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
