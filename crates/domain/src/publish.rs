//! The rules an event must meet to be published. The admin API and `herald events publish`
//! both check an event here, so the two cannot disagree about what is acceptable; each
//! returns the message that goes into the error's `details` under the field's name.

use crate::catalog::EventCatalog;
use crate::operational::is_operational;

/// Most events in one batch publish.
pub const MAX_BATCH: usize = 500;
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Longest ordering key, in characters.
pub const MAX_ORDERING_KEY_CHARS: usize = 128;
/// The default cap on an event's `data`, serialized, in bytes (`HERALD_MAX_EVENT_BYTES`).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

/// `type` names an event type of the catalog that the platform may publish: not one of the
/// operational types, which only Herald publishes, so a receiver can trust them.
pub fn check_event_type(catalog: &EventCatalog, event_type: &str) -> Result<(), String> {
    if is_operational(event_type) {
        Err(format!("{event_type} is published by Herald itself"))
    } else if catalog.contains(event_type) {
        Ok(())
    } else {
        Err(format!("unknown event type: {event_type}"))
    }
}

/// `data`, as the text that will be stored and sent, is at most `max_bytes` long.
pub fn check_event_data(text: &str, max_bytes: usize) -> Result<(), String> {
    if text.len() > max_bytes {
        Err(format!("must be at most {max_bytes} bytes"))
    } else {
        Ok(())
    }
}

/// An idempotency key has 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] characters.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        Err(format!(
            "must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        ))
    } else {
        Ok(())
    }
}

/// An ordering key has 1 to [`MAX_ORDERING_KEY_CHARS`] printable ASCII characters, without
/// a space at either end: it travels as the `X-AmCore-Ordering-Key` header, where other bytes
/// are read differently by different receivers and edge spaces are trimmed away.
pub fn check_ordering_key(key: &str) -> Result<(), String> {
    let printable = key.bytes().all(|byte| (0x20..=0x7e).contains(&byte));
    let trimmed = !key.starts_with(' ') && !key.ends_with(' ');
    if key.is_empty() || key.len() > MAX_ORDERING_KEY_CHARS || !printable || !trimmed {
        Err(format!(
            "must be 1 to {MAX_ORDERING_KEY_CHARS} printable ASCII characters, without a space at either end"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_accepts_its_bounds_and_refuses_past_them() {
        let catalog = EventCatalog::new(vec!["wallet.balance_low".to_owned()]);
        assert!(check_event_type(&catalog, "wallet.balance_low").is_ok());
        assert_eq!(
            check_event_type(&catalog, "wallet.nope"),
            Err("unknown event type: wallet.nope".to_owned())
        );
        assert_eq!(
            check_event_type(&catalog, "endpoint.disabled"),
            Err("endpoint.disabled is published by Herald itself".to_owned())
        );
        assert!(check_event_data(&"x".repeat(10), 10).is_ok());
        assert_eq!(
            check_event_data(&"x".repeat(11), 10),
            Err("must be at most 10 bytes".to_owned())
        );
        assert!(check_idempotency_key("k").is_ok());
        assert!(
            check_idempotency_key(&"é".repeat(255)).is_ok(),
            "characters, not bytes"
        );
        assert!(check_idempotency_key("").is_err());
        assert!(check_ordering_key("customer-42").is_ok());
        assert!(check_ordering_key("order 7/line 2").is_ok());
        assert!(check_ordering_key(&"k".repeat(128)).is_ok());
        for bad in [
            "",
            "a\nb",
            "tab\there",
            "clé",
            "\u{200b}",
            " lead",
            "trail ",
            " ",
            "\u{7f}",
        ] {
            assert!(check_ordering_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_ordering_key(&"k".repeat(129)),
            Err(
                "must be 1 to 128 printable ASCII characters, without a space at either end"
                    .to_owned()
            )
        );
        assert_eq!(
            check_idempotency_key(&"k".repeat(256)),
            Err("must be 1 to 255 characters".to_owned())
        );
    }
}
