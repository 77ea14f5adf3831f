//! The names of the headers Herald sends with a delivery (docs/api.md#headers).
//!
//! HTTP header names are case-insensitive; these are the spellings Herald uses. Only the three
//! signature inputs (`X-AmCore-Signature`, and the `webhook-*` trio) are covered by a signature:
//! the others are informative, and a receiver takes the event id it dedupes on from the signed
//! body (its `id` field) or from the signed `webhook-id`.

/// Herald's own signature: `t=<unix seconds>,v1=<hex>[,v1=<hex>]`.
pub const SIGNATURE: &str = "X-AmCore-Signature";
/// The event id (`evt_…`); equal to the body's `id`.
pub const EVENT_ID: &str = "X-AmCore-Event-Id";
/// The event's type, e.g. `wallet.balance_low`.
pub const EVENT_TYPE: &str = "X-AmCore-Event-Type";
/// The 1-based attempt number of this delivery.
pub const DELIVERY_ATTEMPT: &str = "X-AmCore-Delivery-Attempt";
/// The delivery's number in its endpoint's sequence: 1, 2, 3 … without gaps, so a receiver
/// that sees a jump knows what to ask the catch-up feed for.
pub const SEQUENCE: &str = "X-AmCore-Sequence";
/// The event's ordering key, when it has one.
pub const ORDERING_KEY: &str = "X-AmCore-Ordering-Key";
/// Standard Webhooks message id; Herald sends the event id.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks timestamp, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks signature: `v1,<base64>`.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
