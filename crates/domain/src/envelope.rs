//! The delivery body (docs/api.md#the-envelope). Each supported API version owns one renderer,
//! so a future version can change the envelope without touching endpoints pinned to an old one.

use crate::delivery::Event;

/// The version has no renderer (it was removed from configuration after endpoints pinned it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported api version: {0}")]
pub struct UnsupportedVersion(pub String);

/// Renders `event` as the body an endpoint pinned to `api_version` receives.
pub fn render(api_version: &str, event: &Event) -> Result<Vec<u8>, UnsupportedVersion> {
    match api_version {
        "2026-04-01" => Ok(render_2026_04_01(event)),
        other => Err(UnsupportedVersion(other.to_owned())),
    }
}

/// `{"id", "type", "api_version", "created_at", "org_id", "data"}`. `data` is spliced in as the
/// exact JSON text the platform published, so its bytes survive untouched.
fn render_2026_04_01(event: &Event) -> Vec<u8> {
    let quote = |text: &str| serde_json::Value::String(text.to_owned()).to_string();
    format!(
        "{{\"id\":{},\"type\":{},\"api_version\":\"2026-04-01\",\"created_at\":{},\"org_id\":{},\"data\":{}}}",
        quote(&event.id.to_string()),
        quote(&event.event_type),
        quote(&event.created_at.to_string()),
        quote(&event.org_id.to_string()),
        event.data,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use crate::{EventId, EventOrigin, OrgId, Timestamp};

    use super::*;

    #[test]
    fn renders_the_2026_04_01_envelope_as_valid_json() {
        let event = Event {
            id: EventId::new(),
            org_id: OrgId::new(),
            event_type: "wallet.balance_low".to_owned(),
            data: r#"{"balance":"1.00","note":"quote \" here"}"#.to_owned(),
            idempotency_key: None,
            ordering_key: None,
            origin: EventOrigin::Publish,
            created_at: Timestamp::from_micros(1_777_204_800_000_000),
            traceparent: None,
        };
        let body = render("2026-04-01", &event).expect("supported");
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
        assert_eq!(parsed["id"], event.id.to_string());
        assert_eq!(parsed["type"], "wallet.balance_low");
        assert_eq!(parsed["api_version"], "2026-04-01");
        assert_eq!(parsed["created_at"], "2026-04-26T12:00:00.000000Z");
        assert_eq!(parsed["org_id"], event.org_id.to_string());
        assert_eq!(parsed["data"]["note"], "quote \" here");
        assert_eq!(
            render("1999-01-01", &event),
            Err(UnsupportedVersion("1999-01-01".to_owned()))
        );
    }
}
