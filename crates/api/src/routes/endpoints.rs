//! Endpoint management: `/v1/webhooks` and `/v1/webhooks/{id}` (docs/api.md#endpoints).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_domain::client_certificate::{CertificateSummary, ClientCertificate};
use herald_domain::custom_headers::{CustomHeaders, REDACTED};
use herald_domain::endpoint::{normalize_description, validate_events, validate_url};
use herald_domain::filter::Filter;
use herald_domain::{
    AuditAction, AuditId, AuditRecord, DisabledReason, Endpoint, EndpointCredentials,
    EndpointHealth, EndpointId, FieldErrors, Secret, Timestamp,
};
use herald_store::EndpointPatch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::client_certificate::check_client_certificate;
use crate::docs::{CommonErrors, EndpointList};
use crate::error::ApiError;
use crate::extract::{
    Authorized, Fields, JsonObject, PathId, QueryParams, ReadWebhooks, WriteWebhooks,
};
use crate::state::{ApiConfig, AppState};
use crate::wire::{ListResponse, page_request, path_id};

/// Body of `POST /v1/webhooks`. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointRequest {
    /// An absolute `https` URL, at most 2048 characters, without user-info, whose host is a
    /// public name or address (the pattern says what a schema can; the rest is checked too).
    #[schema(
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]://[^\u0000-\u0020\u007f-\u009f/][^\u0000-\u0020\u007f-\u009f]*$",
        example = "https://example.com/webhooks"
    )]
    pub url: String,
    /// 1 to 50 distinct entries: event types from the catalog, `prefix.*` wildcards (every
    /// type whose name starts with `prefix.`) or `*` (every type).
    #[schema(min_items = 1, max_items = 50)]
    pub events: Vec<String>,
    /// At most 200 characters; whitespace-only is stored as `null`.
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// A supported API version; the newest by default. May be omitted, but not `null`.
    #[schema(nullable = false)]
    pub api_version: Option<String>,
    /// Up to 20 headers sent with every delivery (e.g. an API key a gateway demands): names
    /// are HTTP tokens of at most 64 characters, not ones Herald sets; values at most 1,024
    /// printable characters. Stored sealed; answers show every value as `"<redacted>"`.
    #[schema(schema_with = crate::docs::custom_headers_or_null_schema)]
    pub headers: Option<BTreeMap<String, String>>,
    /// A client certificate presented when the receiver asks (mutual TLS): a PEM certificate
    /// chain and its unencrypted private key. Write-only; answers show its subject and expiry.
    pub client_certificate: Option<ClientCertificateRequest>,
    /// Which subscribed events are delivered: a filter (docs/api.md#filters), at most 4 KiB
    /// serialized and 8 levels deep, matched against `{"type", "data"}` of each event.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

/// A client certificate as sent: write-only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateRequest {
    /// PEM certificates, the leaf first; at most 32 KiB.
    #[schema(max_length = 32768)]
    pub cert_pem: String,
    /// The leaf's private key, PEM, unencrypted (PKCS#8, PKCS#1 RSA or SEC1 EC); at most 32 KiB.
    #[schema(max_length = 32768)]
    pub key_pem: String,
}

/// What answers show of a client certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientCertificateResponse {
    /// The leaf certificate's subject, RFC 4514.
    pub subject: String,
    /// When the leaf certificate expires.
    #[schema(format = DateTime)]
    pub not_after: String,
}

/// Body of `PATCH /v1/webhooks/{id}`; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    /// A new URL, under the create rules. May be omitted, but not `null`.
    #[schema(
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]://[^\u0000-\u0020\u007f-\u009f/][^\u0000-\u0020\u007f-\u009f]*$",
        nullable = false
    )]
    pub url: Option<String>,
    /// The new, whole set of event types. May be omitted, but not `null`.
    #[schema(min_items = 1, max_items = 50, nullable = false)]
    pub events: Option<Vec<String>>,
    /// A new description; empty after trimming (or `null`) clears it.
    #[schema(max_length = 200, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// Enable or disable delivery. May be omitted, but not `null`.
    #[schema(nullable = false)]
    pub active: Option<bool>,
    /// The new, whole set of custom headers; a value of `"<redacted>"` keeps the stored value
    /// of that header, so a read set can be sent back with one value changed.
    #[schema(schema_with = crate::docs::custom_headers_schema)]
    pub headers: Option<BTreeMap<String, String>>,
    /// A new client certificate; `null` removes it.
    pub client_certificate: Option<ClientCertificateRequest>,
    /// A new filter; `null` removes it, so every subscribed event is delivered.
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

/// The endpoint object.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointResponse {
    /// The endpoint's id.
    #[schema(format = Uuid)]
    pub id: String,
    /// The owning organization.
    #[schema(format = Uuid)]
    pub org_id: String,
    /// Where deliveries go.
    pub url: String,
    /// Free text, or `null`.
    pub description: Option<String>,
    /// Subscribed event types and wildcards, as written.
    pub events: Vec<String>,
    /// Whether deliveries are sent.
    pub active: bool,
    /// The delivery envelope version.
    pub api_version: String,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Always `null`: deleted endpoints are not returned.
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    /// Why the endpoint is inactive: `failing` (Herald, after its deliveries failed for the
    /// auto-disable period), `gone` (Herald, after its receiver answered 410) or `manual` (the
    /// organization); `null` while it is active. Read-only.
    #[schema(pattern = "^(failing|gone|manual)$")]
    pub disabled_reason: Option<&'static str>,
    /// The first failure of the current streak of failures, or `null`; a success clears it,
    /// and so does setting the endpoint active. Read-only.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    /// The custom headers sent with every delivery, each value shown as `"<redacted>"`.
    pub headers: BTreeMap<String, &'static str>,
    /// The client certificate presented for mutual TLS, or `null`.
    pub client_certificate: Option<ClientCertificateResponse>,
    /// The filter, as written, or `null` (every subscribed event is delivered).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

impl From<Endpoint> for EndpointResponse {
    fn from(endpoint: Endpoint) -> Self {
        Self {
            id: endpoint.id.to_string(),
            org_id: endpoint.org_id.to_string(),
            url: endpoint.url,
            description: endpoint.description,
            events: endpoint.events,
            active: endpoint.active,
            api_version: endpoint.api_version,
            created_at: endpoint.created_at.to_string(),
            updated_at: endpoint.updated_at.to_string(),
            deleted_at: endpoint.deleted_at.map(|at| at.to_string()),
            disabled_reason: endpoint.health.disabled_reason.map(DisabledReason::as_str),
            failing_since: endpoint.health.failing_since.map(|at| at.to_string()),
            headers: endpoint
                .header_names
                .into_iter()
                .map(|name| (name, REDACTED))
                .collect(),
            client_certificate: endpoint.client_certificate.map(|summary| {
                ClientCertificateResponse {
                    subject: summary.subject,
                    not_after: summary.not_after.to_string(),
                }
            }),
            filter: endpoint.filter.map(|filter| filter.as_json().clone()),
        }
    }
}

/// The endpoint object plus its new secret: the answer of create and rotate only.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecretResponse {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointResponse,
    /// Standard base64 of 32 random bytes; shown this once.
    pub secret: String,
    /// Always `true`: the secret is never shown again.
    pub secret_displayed_once: bool,
}

impl EndpointWithSecretResponse {
    /// The answer for `endpoint` and the secret it was just given.
    pub(crate) fn new(endpoint: Endpoint, secret: &Secret) -> Self {
        Self {
            endpoint: endpoint.into(),
            secret: secret.expose_base64(),
            secret_displayed_once: true,
        }
    }
}

/// Create an endpoint.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "endpoints", security(("bearer" = [])),
    request_body = CreateEndpointRequest,
    responses((status = 201, description = "Created; the secret is shown this once", body = EndpointWithSecretResponse), CommonErrors)
)]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<EndpointWithSecretResponse>), ApiError> {
    let config = &state.config;
    let NewEndpointFields {
        url,
        events,
        description,
        api_version,
        headers,
        client_certificate,
        filter,
    } = read_create_body(body, config)?;

    let now = Timestamp::now();
    let endpoint = Endpoint {
        id: EndpointId::new(),
        org_id: auth.org_id(),
        url,
        description,
        events,
        active: true,
        api_version,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        health: EndpointHealth::default(),
        header_names: headers.names(),
        client_certificate: client_certificate
            .as_ref()
            .map(|(_, summary)| summary.clone()),
        filter,
    };
    let credentials = EndpointCredentials {
        custom_headers: headers,
        client_certificate: client_certificate.map(|(pair, _)| pair),
    };
    let secret = Secret::generate();
    let audit = audit_record(&auth, AuditAction::EndpointCreated, &endpoint.id, now);
    state
        .store
        .create_endpoint(
            &endpoint,
            &secret,
            &credentials,
            config.endpoint_cap,
            &audit,
        )
        .await
        .map_err(|error| match error {
            herald_store::StoreError::LimitExceeded => ApiError::LimitExceeded {
                max: config.endpoint_cap,
            },
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecretResponse::new(endpoint, &secret)),
    ))
}

/// List live endpoints, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "endpoints", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 50"),
        ("cursor" = Option<String>, Query, pattern = r"^[A-Za-z0-9_-]{21}[AQgw]$", min_length = 22, max_length = 22, description = "The `next_cursor` of the previous page (22 characters of unpadded base64url)"),
    ),
    responses((status = 200, description = "A page of endpoints", body = EndpointList), CommonErrors)
)]
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    mut query: QueryParams,
) -> Result<Json<ListResponse<EndpointResponse>>, ApiError> {
    let mut errors = FieldErrors::new();
    let page = page_request(&mut query, 50, 100, &mut errors);
    query.report_unknown(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let endpoints = state.store.list_endpoints(auth.org_id(), &page).await?;
    Ok(Json(ListResponse::from_page(
        endpoints,
        page.limit,
        EndpointResponse::from,
    )))
}

/// Get one endpoint.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 200, description = "The endpoint", body = EndpointResponse), CommonErrors)
)]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    auth: Authorized<ReadWebhooks>,
    PathId(id): PathId,
) -> Result<Json<EndpointResponse>, ApiError> {
    let endpoint = state
        .store
        .get_endpoint(auth.org_id(), path_id(&id)?)
        .await?;
    Ok(Json(endpoint.into()))
}

/// Update an endpoint partially.
#[utoipa::path(
    patch, path = "/v1/webhooks/{id}", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = UpdateEndpointRequest,
    responses((status = 200, description = "The updated endpoint", body = EndpointResponse), CommonErrors)
)]
pub(crate) async fn update_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
    JsonObject(body): JsonObject,
) -> Result<Json<EndpointResponse>, ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    // `"<redacted>"` values keep stored ones: read those only when one was sent.
    let stored = match body.get("headers") {
        Some(headers) if CustomHeaders::placeholders(headers) => Some(
            state
                .store
                .get_endpoint_credentials(auth.org_id(), endpoint_id)
                .await?
                .custom_headers,
        ),
        _ => None,
    };
    let patch = read_update_body_with(body, &state.config, stored.as_ref())?;

    let audit = audit_record(
        &auth,
        AuditAction::EndpointUpdated,
        &endpoint_id,
        Timestamp::now(),
    );
    let endpoint = state
        .store
        .update_endpoint(auth.org_id(), endpoint_id, &patch, &audit)
        .await?;
    Ok(Json(endpoint.into()))
}

/// Delete an endpoint (soft delete; pending deliveries are abandoned).
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "endpoints", security(("bearer" = [])),
    params(("id" = String, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted"), CommonErrors)
)]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WriteWebhooks>,
    PathId(id): PathId,
) -> Result<StatusCode, ApiError> {
    let endpoint_id: EndpointId = path_id(&id)?;
    let audit = audit_record(
        &auth,
        AuditAction::EndpointDeleted,
        &endpoint_id,
        Timestamp::now(),
    );
    state
        .store
        .delete_endpoint(auth.org_id(), endpoint_id, &audit)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields of a create request, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpointFields {
    /// The URL as the user wrote it.
    pub url: String,
    /// The subscribed event types.
    pub events: Vec<String>,
    /// The description, `None` when absent, `null` or whitespace-only.
    pub description: Option<String>,
    /// The pinned API version (the newest when not given).
    pub api_version: String,
    /// The custom headers (none when not given).
    pub headers: CustomHeaders,
    /// The client certificate and what answers show of it, when given.
    pub client_certificate: Option<(ClientCertificate, CertificateSummary)>,
    /// The filter, when given (and not `null`).
    pub filter: Option<Filter>,
}

/// Reads the body of `POST /v1/webhooks`, checking every rule of docs/api.md#validation-rules and
/// reporting every field at fault in one 422. Pure, so the fuzz targets can call it.
pub fn read_create_body(
    body: Map<String, Value>,
    config: &ApiConfig,
) -> Result<NewEndpointFields, ApiError> {
    let mut fields = Fields::new(body);
    let url = fields.required_string("url").and_then(|url| {
        check(
            &mut fields,
            "url",
            validate_url(&url, &config.address_policy),
        )
    });
    let events = fields.required_string_array("events").and_then(|events| {
        check(
            &mut fields,
            "events",
            validate_events(&events, &config.catalog),
        )
    });
    let description = match fields.nullable_string("description") {
        Some(Some(text)) => {
            check(&mut fields, "description", normalize_description(&text)).flatten()
        }
        _ => None,
    };
    let api_version = match fields.optional_string("api_version") {
        Some(version) => check(
            &mut fields,
            "api_version",
            config
                .api_versions
                .check_new(&version)
                .map_err(|e| e.to_string()),
        )
        .map(|()| version),
        None => Some(config.api_versions.default_version().to_owned()),
    };
    let headers = match fields.take_value("headers") {
        None | Some(Value::Null) => Some(CustomHeaders::default()),
        Some(value) => check(&mut fields, "headers", CustomHeaders::parse(&value)),
    };
    let client_certificate = match fields.take_value("client_certificate") {
        None | Some(Value::Null) => Some(None),
        Some(value) => check(
            &mut fields,
            "client_certificate",
            read_client_certificate(&value).map(Some),
        ),
    };
    let filter = match fields.take_value("filter") {
        None | Some(Value::Null) => Some(None),
        Some(value) => check(&mut fields, "filter", read_filter(&value).map(Some)),
    };
    fields.finish()?;
    let (
        Some(url),
        Some(events),
        Some(api_version),
        Some(headers),
        Some(client_certificate),
        Some(filter),
    ) = (
        url,
        events,
        api_version,
        headers,
        client_certificate,
        filter,
    )
    else {
        return Err(ApiError::Internal(
            "validated fields missing after a clean finish".into(),
        ));
    };
    Ok(NewEndpointFields {
        url,
        events,
        description,
        api_version,
        headers,
        client_certificate,
        filter,
    })
}

/// Reads the body of `PATCH /v1/webhooks/{id}` into a patch, under the same rules as create.
/// Pure, so the fuzz targets can call it; a `"<redacted>"` header value is refused here, as
/// no stored set is given (see [`read_update_body_with`]).
pub fn read_update_body(
    body: Map<String, Value>,
    config: &ApiConfig,
) -> Result<EndpointPatch, ApiError> {
    read_update_body_with(body, config, None)
}

/// [`read_update_body`], with the endpoint's stored custom headers, which `"<redacted>"`
/// values keep.
pub fn read_update_body_with(
    body: Map<String, Value>,
    config: &ApiConfig,
    stored: Option<&CustomHeaders>,
) -> Result<EndpointPatch, ApiError> {
    let mut fields = Fields::new(body);
    let mut patch = EndpointPatch {
        url: fields.optional_string("url").and_then(|url| {
            check(
                &mut fields,
                "url",
                validate_url(&url, &config.address_policy),
            )
        }),
        ..EndpointPatch::default()
    };
    patch.events = fields.optional_string_array("events").and_then(|events| {
        check(
            &mut fields,
            "events",
            validate_events(&events, &config.catalog),
        )
    });
    patch.description = match fields.nullable_string("description") {
        Some(Some(text)) => check(&mut fields, "description", normalize_description(&text)),
        Some(None) => Some(None),
        None => None,
    };
    patch.active = fields.optional_bool("active");
    patch.headers = match fields.take_value("headers") {
        None => None,
        Some(Value::Null) => {
            fields.error("headers", "must be an object; {} removes every header");
            None
        }
        Some(value) => {
            let none = CustomHeaders::default();
            let parsed = CustomHeaders::parse_update(&value, stored.unwrap_or(&none));
            check(&mut fields, "headers", parsed)
        }
    };
    patch.client_certificate = match fields.take_value("client_certificate") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => check(
            &mut fields,
            "client_certificate",
            read_client_certificate(&value).map(Some),
        ),
    };
    patch.filter = match fields.take_value("filter") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => check(&mut fields, "filter", read_filter(&value).map(Some)),
    };
    if fields.take_value("api_version").is_some() {
        fields.error(
            "api_version",
            "immutable; create a new endpoint at the new version",
        );
    }
    fields.finish()?;
    Ok(patch)
}

/// Reads `{"cert_pem", "key_pem"}` and checks the pair.
fn read_client_certificate(
    value: &Value,
) -> Result<(ClientCertificate, CertificateSummary), String> {
    let Value::Object(members) = value else {
        return Err("must be an object with cert_pem and key_pem, or null".to_owned());
    };
    if let Some(unknown) = members
        .keys()
        .find(|name| !matches!(name.as_str(), "cert_pem" | "key_pem"))
    {
        return Err(format!(
            "unknown field {unknown}: only cert_pem and key_pem"
        ));
    }
    let (Some(Value::String(cert_pem)), Some(Value::String(key_pem))) =
        (members.get("cert_pem"), members.get("key_pem"))
    else {
        return Err("must have cert_pem and key_pem, both PEM strings".to_owned());
    };
    check_client_certificate(cert_pem, key_pem)
}

/// Checks a filter; the message starts with the JSON pointer of the fault inside the filter
/// (`/data/balance/$lt: must be a number or a string`).
pub(crate) fn read_filter(value: &Value) -> Result<Filter, String> {
    Filter::parse(value).map_err(|error| error.to_string())
}

/// Records a rule's verdict on `field`, passing the value through when it holds.
fn check<T>(fields: &mut Fields, field: &str, verdict: Result<T, String>) -> Option<T> {
    verdict.map_err(|message| fields.error(field, message)).ok()
}

/// An audit record of a change made by the authenticated key.
pub(crate) fn audit_record<S>(
    auth: &Authorized<S>,
    action: AuditAction,
    target: &impl ToString,
    occurred_at: Timestamp,
) -> AuditRecord {
    AuditRecord {
        id: AuditId::new(),
        org_id: auth.org_id(),
        api_key_id: Some(auth.key.id),
        action,
        target_id: target.to_string(),
        occurred_at,
        request_id: Some(crate::request_id::current()),
        reason: None,
    }
}
