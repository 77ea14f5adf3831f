//! Portal sessions (docs/api.md#the-portal): a short-lived organization credential that the
//! portal at `/portal` uses as its bearer token, and the look the platform asked for.
//!
//! A session is an API key with an expiry and these settings: it is stored, hashed and checked
//! exactly like one, so every `/v1` rule (scopes, rate limits, organization isolation) holds
//! for the portal without a second implementation.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::scope::Scope;

/// Shortest session, in seconds.
pub const MIN_TTL_SECONDS: u64 = 60;
/// Longest session, in seconds (a day).
pub const MAX_TTL_SECONDS: u64 = 86_400;
/// A session's length when the request names none (an hour).
pub const DEFAULT_TTL_SECONDS: u64 = 3_600;
/// Longest theme `name`, in characters.
pub const MAX_THEME_NAME_CHARS: usize = 100;
/// Longest `return_url` or `logo_url`, in characters.
pub const MAX_PORTAL_URL_CHARS: usize = 2_048;

/// What a portal session carries besides its scopes and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalSession {
    /// Whether the session may only read (its key lacks `webhooks:write`).
    pub read_only: bool,
    /// Where "Back" and an expired session lead.
    pub return_url: Option<String>,
    /// The platform's branding.
    pub theme: Option<PortalTheme>,
}

impl PortalSession {
    /// The scopes a session's key carries: never `org:admin:write`.
    pub fn scopes(&self) -> Vec<Scope> {
        if self.read_only {
            vec![Scope::WebhooksRead]
        } else {
            vec![Scope::WebhooksRead, Scope::WebhooksWrite]
        }
    }
}

/// The platform's branding of the portal. Each part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalTheme {
    /// `#RRGGBB`.
    pub accent_color: Option<String>,
    /// An `https` URL of the platform's logo.
    pub logo_url: Option<String>,
    /// The platform's name, shown in the header and in "Back to …".
    pub name: Option<String>,
}

/// Checks a session length in seconds.
pub fn check_ttl(seconds: i64) -> Result<u64, String> {
    u64::try_from(seconds)
        .ok()
        .filter(|seconds| (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(seconds))
        .ok_or_else(|| format!("must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} seconds"))
}

/// Checks `#RRGGBB`; returns it as given.
pub fn check_accent_color(text: &str) -> Result<(), String> {
    let hex = text.strip_prefix('#').unwrap_or_default();
    if hex.len() == 6 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err("must be a colour written #RRGGBB".to_owned())
    }
}

/// Checks an absolute `https` URL the browser will follow or load (a return link, a logo).
/// Unlike an endpoint URL, any host is fine: Herald never dials it.
pub fn check_browser_url(text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_PORTAL_URL_CHARS {
        return Err(format!("must be at most {MAX_PORTAL_URL_CHARS} characters"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let url = Url::parse(text).map_err(|_| "must be an absolute URL".to_owned())?;
    if url.scheme() != "https" {
        return Err("must use https".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user-info".to_owned());
    }
    Ok(())
}

/// Checks the theme's display name: 1 to 100 characters, no control characters.
pub fn check_theme_name(text: &str) -> Result<(), String> {
    let length = text.chars().count();
    if text.trim().is_empty() || length > MAX_THEME_NAME_CHARS {
        return Err(format!(
            "must be 1 to {MAX_THEME_NAME_CHARS} characters, not blank"
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() || is_format_character(c))
    {
        return Err("must not contain control or bidirectional formatting characters".to_owned());
    }
    Ok(())
}

/// Invisible characters that reorder or hide text (Unicode bidirectional controls, zero-width
/// characters): a name shown as "Back to …" must read as it is.
fn is_format_character(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds_are_inclusive() {
        assert_eq!(check_ttl(60), Ok(60));
        assert_eq!(check_ttl(86_400), Ok(86_400));
        assert!(check_ttl(59).is_err());
        assert!(check_ttl(86_401).is_err());
        assert!(check_ttl(-1).is_err());
    }

    #[test]
    fn accent_colour_is_six_hex_digits() {
        assert!(check_accent_color("#1a2B3c").is_ok());
        for bad in ["1a2b3c", "#1a2b3", "#1a2b3cd", "#gggggg", "red", ""] {
            assert!(check_accent_color(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn browser_urls_are_https_with_a_host() {
        assert!(check_browser_url("https://app.example.com/settings/webhooks").is_ok());
        for bad in [
            "http://app.example.com",
            "javascript:alert(1)",
            "https://user:pw@example.com",
            "/relative",
            "https://exa mple.com",
        ] {
            assert!(check_browser_url(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn read_only_sessions_cannot_write() {
        let read_only = PortalSession {
            read_only: true,
            ..PortalSession::default()
        };
        assert_eq!(read_only.scopes(), vec![Scope::WebhooksRead]);
        let full = PortalSession::default().scopes();
        assert!(full.contains(&Scope::WebhooksWrite));
        assert!(!full.contains(&Scope::OrgAdminWrite));
    }

    #[test]
    fn theme_names_are_bounded() {
        assert!(check_theme_name("Acme").is_ok());
        assert!(check_theme_name(" ").is_err());
        assert!(check_theme_name(&"x".repeat(101)).is_err());
        assert!(check_theme_name("a\u{0007}").is_err());
        assert!(check_theme_name("Acme \u{202E}moc.live").is_err());
        assert!(check_theme_name("Zero\u{200B}width").is_err());
        assert!(check_theme_name("Café Ünïcode 東京").is_ok());
    }
}
