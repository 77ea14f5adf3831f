//! Reading stored rows into domain types, once for both backends. Each backend's row type
//! implements [`ReadRow`]; the mappers below only ask for typed columns by name. Both schemas
//! use the same representations (UUIDs, integer microseconds, JSON text), which is what lets
//! one mapper serve both.

use std::str::FromStr;

use herald_domain::client_certificate::{CertificateSummary, ClientCertificate};
use herald_domain::custom_headers::CustomHeaders;
use herald_domain::filter::Filter;
use herald_domain::scope::Scope;
use herald_domain::{
    ApiKey, ApiKeyId, Attempt, AttemptId, AuditAction, AuditId, AuditRecord, DeliveryId,
    DisabledReason, Endpoint, EndpointCredentials, EndpointHealth, EndpointId, Event, EventId,
    EventOrigin, Org, OrgId, Outcome, SigningMaterial, Timestamp, TraceParent,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::cipher::SecretCipher;
use crate::queue::{ClaimedDelivery, LeaseToken};
use crate::{StoreError, map_error};

/// Typed column access, with driver errors already translated.
pub(crate) trait ReadRow {
    fn uuid(&self, name: &str) -> Result<Uuid, StoreError>;
    fn optional_uuid(&self, name: &str) -> Result<Option<Uuid>, StoreError>;
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn integer(&self, name: &str) -> Result<i64, StoreError>;
    fn optional_integer(&self, name: &str) -> Result<Option<i64>, StoreError>;
    fn boolean(&self, name: &str) -> Result<bool, StoreError>;
    fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError>;
    fn optional_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Implements [`ReadRow`] for a driver row type: every method is `try_get` plus translation.
macro_rules! impl_read_row {
    ($row:ty) => {
        impl ReadRow for $row {
            fn uuid(&self, name: &str) -> Result<Uuid, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn optional_uuid(&self, name: &str) -> Result<Option<Uuid>, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn text(&self, name: &str) -> Result<String, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn integer(&self, name: &str) -> Result<i64, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn optional_integer(&self, name: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn boolean(&self, name: &str) -> Result<bool, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
                self.try_get(name).map_err(map_error)
            }
            fn optional_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
                self.try_get(name).map_err(map_error)
            }
        }
    };
}

impl_read_row!(SqliteRow);
impl_read_row!(PgRow);

/// The columns [`endpoint_from_row`] reads.
pub(crate) const ENDPOINT_COLUMNS: &str = "id, org_id, url, description, events, active, api_version, created_at, updated_at, deleted_at, \
     disabled_reason, failing_since, header_names, client_certificate_subject, client_certificate_not_after, \
     payload_filter";

/// The columns [`attempt_from_row`] reads.
pub(crate) const ATTEMPT_COLUMNS: &str = "id, org_id, delivery_id, endpoint_id, event_id, event_type, url, attempt, \
     outcome, response_status, response_time_ms, request_body_sha256, request_body_bytes, request_headers, \
     response_body_excerpt, error, next_attempt_at, occurred_at, sequence, ordering_key";

/// The columns [`event_from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str =
    "id, org_id, event_type, data, idempotency_key, origin, created_at, ordering_key, traceparent";

/// The start of the query that reads claimed deliveries with everything needed to attempt
/// them; the caller appends the claimed ids and `)`. An attempt has no use for the endpoint's
/// filter (it was matched at fan-out), so it reads none and never parses one.
pub(crate) const CLAIMED_DETAILS: &str =
    "SELECT d.id AS delivery_id, d.attempts AS attempts, d.schedule_base AS schedule_base,
            d.sequence AS sequence, e.ordering_key AS event_ordering_key,
            e.id AS event_id, e.org_id AS event_org_id, e.event_type AS event_event_type,
            e.data AS event_data, e.idempotency_key AS event_idempotency_key, e.origin AS event_origin,
            e.created_at AS event_created_at, e.traceparent AS event_traceparent,
            p.id, p.org_id, p.url, p.description, p.events, p.active, p.api_version, p.created_at, p.updated_at,
            p.deleted_at, p.disabled_reason, p.failing_since, p.header_names, p.client_certificate_subject,
            p.client_certificate_not_after, CAST(NULL AS TEXT) AS payload_filter, p.secret, p.previous_secret, p.previous_secret_until,
            p.headers, p.client_certificate, o.webhook_secret
     FROM deliveries d
     JOIN events e ON e.id = d.event_id
     JOIN endpoints p ON p.id = d.endpoint_id
     JOIN orgs o ON o.id = d.org_id
     WHERE d.id IN (";

/// A row of [`CLAIMED_DETAILS`], with what signs it (read from the row by
/// `shared::claimed_from_rows`).
pub(crate) fn claimed_from_row(
    row: &impl ReadRow,
    signing: SigningMaterial,
    credentials: EndpointCredentials,
    lease: LeaseToken,
) -> Result<ClaimedDelivery, StoreError> {
    let attempts = row.integer("attempts")?;
    let schedule_base = row.integer("schedule_base")?;
    Ok(ClaimedDelivery {
        delivery_id: DeliveryId::from_uuid(row.uuid("delivery_id")?),
        attempt_number: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
        schedule_attempt: u32::try_from(attempts - schedule_base + 1).unwrap_or(1),
        sequence: row.optional_integer("sequence")?.map(i64::unsigned_abs),
        event: event_from_row(row, "event_")?,
        endpoint: endpoint_from_row(row)?,
        signing,
        credentials,
        lease,
    })
}

fn instant(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

pub(crate) fn endpoint_from_row(row: &impl ReadRow) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: EndpointId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        url: row.text("url")?,
        description: row.optional_text("description")?,
        events: serde_json::from_str(&row.text("events")?)
            .map_err(|_| StoreError::Corrupt("endpoint events are not a JSON array"))?,
        active: row.boolean("active")?,
        api_version: row.text("api_version")?,
        created_at: instant(row.integer("created_at")?),
        updated_at: instant(row.integer("updated_at")?),
        deleted_at: row.optional_integer("deleted_at")?.map(instant),
        health: EndpointHealth {
            disabled_reason: row
                .optional_text("disabled_reason")?
                .map(|text| {
                    DisabledReason::parse(&text)
                        .ok_or(StoreError::Corrupt("unknown disabled_reason stored"))
                })
                .transpose()?,
            failing_since: row.optional_integer("failing_since")?.map(instant),
        },
        header_names: row
            .optional_text("header_names")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|_| StoreError::Corrupt("endpoint header names are not a JSON array"))?
            .unwrap_or_default(),
        client_certificate: match row.optional_text("client_certificate_subject")? {
            Some(subject) => Some(CertificateSummary {
                subject,
                not_after: instant(row.integer("client_certificate_not_after")?),
            }),
            None => None,
        },
        filter: row
            .optional_text("payload_filter")?
            .map(|text| {
                let value = serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("endpoint filter is not JSON"))?;
                Filter::parse(&value).map_err(|_| StoreError::Corrupt("endpoint filter is invalid"))
            })
            .transpose()?,
    })
}

/// The stored form of an endpoint's filter.
pub(crate) fn filter_json(filter: &Filter) -> String {
    filter.as_json().to_string()
}

/// The sealed form of a client certificate pair (`None` when there is none).
pub(crate) fn sealed_client_certificate(
    certificate: Option<&ClientCertificate>,
    cipher: &SecretCipher,
) -> Option<Vec<u8>> {
    let certificate = certificate?;
    let plaintext = serde_json::json!({
        "cert_pem": certificate.cert_pem(),
        "key_pem": certificate.expose_key_pem(),
    });
    Some(cipher.seal_bytes(plaintext.to_string().as_bytes()))
}

/// An endpoint's credentials from the sealed `headers` and `client_certificate` columns of
/// `row`.
pub(crate) fn open_credentials(
    row: &impl ReadRow,
    cipher: &SecretCipher,
) -> Result<EndpointCredentials, StoreError> {
    let client_certificate = match row.optional_bytes("client_certificate")? {
        None => None,
        Some(sealed) => {
            let plaintext = cipher.open_bytes(&sealed)?;
            let pair: serde_json::Value = serde_json::from_slice(&plaintext)
                .map_err(|_| StoreError::Corrupt("a sealed client certificate is not JSON"))?;
            let (Some(cert_pem), Some(key_pem)) =
                (pair["cert_pem"].as_str(), pair["key_pem"].as_str())
            else {
                return Err(StoreError::Corrupt(
                    "a sealed client certificate lacks its parts",
                ));
            };
            Some(ClientCertificate::new(
                cert_pem.to_owned(),
                key_pem.to_owned(),
            ))
        }
    };
    Ok(EndpointCredentials {
        custom_headers: open_custom_headers(row.optional_bytes("headers")?, cipher)?,
        client_certificate,
    })
}

/// The stored forms of an endpoint's custom headers: the names as JSON and the whole set
/// sealed, both `None` when there are none.
pub(crate) fn sealed_custom_headers(
    headers: &CustomHeaders,
    cipher: &SecretCipher,
) -> (Option<String>, Option<Vec<u8>>) {
    if headers.is_empty() {
        return (None, None);
    }
    let names = serde_json::Value::from(headers.names()).to_string();
    let pairs: Vec<[&str; 2]> = headers
        .pairs()
        .iter()
        .map(|(name, value)| [name.as_str(), value.as_str()])
        .collect();
    let plaintext = serde_json::to_vec(&pairs).unwrap_or_default();
    (Some(names), Some(cipher.seal_bytes(&plaintext)))
}

/// Opens the sealed `headers` column (`None`: the endpoint has none).
fn open_custom_headers(
    sealed: Option<Vec<u8>>,
    cipher: &SecretCipher,
) -> Result<CustomHeaders, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(CustomHeaders::default());
    };
    let plaintext = cipher.open_bytes(&sealed)?;
    let pairs: Vec<(String, String)> = serde_json::from_slice(&plaintext)
        .map_err(|_| StoreError::Corrupt("sealed custom headers are not JSON pairs"))?;
    Ok(CustomHeaders::from_checked(pairs))
}

pub(crate) fn api_key_from_row(row: &impl ReadRow) -> Result<ApiKey, StoreError> {
    let scopes = row
        .text("scopes")?
        .split(',')
        .map(Scope::from_str)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Corrupt("unknown scope stored on an api key"))?;
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        scopes,
        hint: row.text("hint")?,
        created_at: instant(row.integer("created_at")?),
        revoked_at: row.optional_integer("revoked_at")?.map(instant),
        expires_at: row.optional_integer("expires_at")?.map(instant),
        portal: row
            .optional_text("portal")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|_| StoreError::Corrupt("unreadable portal session settings"))?,
    })
}

pub(crate) fn org_from_row(row: &impl ReadRow) -> Result<Org, StoreError> {
    Ok(Org {
        id: OrgId::from_uuid(row.uuid("id")?),
        name: row.text("name")?,
        created_at: instant(row.integer("created_at")?),
    })
}

pub(crate) fn audit_from_row(row: &impl ReadRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: AuditId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        api_key_id: row.optional_uuid("api_key_id")?.map(ApiKeyId::from_uuid),
        action: AuditAction::parse(&row.text("action")?)
            .ok_or(StoreError::Corrupt("unknown audit action"))?,
        target_id: row.text("target_id")?,
        occurred_at: instant(row.integer("occurred_at")?),
        request_id: row.optional_text("request_id")?,
        reason: row.optional_text("reason")?,
    })
}

/// Reads an event; `prefix` names aliased columns in joins (`""` for a plain select).
pub(crate) fn event_from_row(row: &impl ReadRow, prefix: &str) -> Result<Event, StoreError> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(Event {
        id: EventId::from_uuid(row.uuid(&column("id"))?),
        org_id: OrgId::from_uuid(row.uuid(&column("org_id"))?),
        event_type: row.text(&column("event_type"))?,
        data: row.text(&column("data"))?,
        idempotency_key: row.optional_text(&column("idempotency_key"))?,
        ordering_key: row.optional_text(&column("ordering_key"))?,
        origin: EventOrigin::parse(&row.text(&column("origin"))?)
            .ok_or(StoreError::Corrupt("unknown event origin"))?,
        created_at: instant(row.integer(&column("created_at"))?),
        traceparent: row
            .optional_text(&column("traceparent"))?
            .map(|text| {
                TraceParent::parse(&text)
                    .ok_or(StoreError::Corrupt("stored traceparent is invalid"))
            })
            .transpose()?,
    })
}

pub(crate) fn attempt_from_row(row: &impl ReadRow) -> Result<Attempt, StoreError> {
    let headers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.text("request_headers")?)
            .map_err(|_| StoreError::Corrupt("attempt headers are not a JSON object"))?;
    Ok(Attempt {
        id: AttemptId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        delivery_id: DeliveryId::from_uuid(row.uuid("delivery_id")?),
        endpoint_id: EndpointId::from_uuid(row.uuid("endpoint_id")?),
        event_id: EventId::from_uuid(row.uuid("event_id")?),
        event_type: row.text("event_type")?,
        url: row.text("url")?,
        attempt: u32::try_from(row.integer("attempt")?).unwrap_or(u32::MAX),
        outcome: Outcome::parse(&row.text("outcome")?)
            .ok_or(StoreError::Corrupt("unknown attempt outcome"))?,
        response_status: row
            .optional_integer("response_status")?
            .and_then(|status| u16::try_from(status).ok()),
        response_time_ms: row.integer("response_time_ms")?.unsigned_abs(),
        request_body_sha256: row.text("request_body_sha256")?,
        request_body_bytes: row.integer("request_body_bytes")?.unsigned_abs(),
        request_headers: headers
            .into_iter()
            .map(|(name, value)| (name, value.as_str().unwrap_or_default().to_owned()))
            .collect(),
        response_body_excerpt: row.optional_text("response_body_excerpt")?,
        error: row.optional_text("error")?,
        next_attempt_at: row.optional_integer("next_attempt_at")?.map(instant),
        occurred_at: instant(row.integer("occurred_at")?),
        sequence: row.optional_integer("sequence")?.map(i64::unsigned_abs),
        ordering_key: row.optional_text("ordering_key")?,
    })
}

/// The stored form of an endpoint's subscriptions.
pub(crate) fn events_json(events: &[String]) -> String {
    serde_json::to_string(events).expect("a list of strings always serializes")
}

/// The stored form of an attempt's request headers.
pub(crate) fn headers_json(headers: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// SHA-256 of zero bytes: the body "sent" by an attempt that sent nothing.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
