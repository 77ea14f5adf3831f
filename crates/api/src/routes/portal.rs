//! Portal sessions and `GET /v1/me` (docs/api.md#the-portal). A session is minted by the
//! operator (`POST /admin/v1/orgs/{id}/portal-sessions`, `herald portal`) and is then an
//! ordinary organization credential that expires; `/v1/me` tells the portal, or any client,
//! what its token may do.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_domain::portal::{
    DEFAULT_TTL_SECONDS, PortalSession, PortalTheme, check_accent_color, check_browser_url,
    check_theme_name, check_ttl,
};
use herald_domain::secret::ApiKeyToken;
use herald_domain::{ApiKey, ApiKeyId, FieldErrors, OrgId, Scope, Timestamp};
use herald_store::Store;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::docs::CommonErrors;
use crate::error::ApiError;
use crate::extract::{Admin, Authenticated, JsonObject, PathId};
use crate::state::AppState;
use crate::wire::path_id;

/// A portal session as minted: the link to open, and the token behind it.
#[derive(Debug, Serialize)]
pub struct PortalSessionResponse {
    /// The session's id: `POST /admin/v1/keys/{id}/revoke` ends it before it expires.
    pub id: String,
    /// `<HERALD_PUBLIC_URL>/portal/#token=<token>`: the fragment never reaches a server.
    pub url: String,
    /// The session's bearer token, shown this once.
    pub token: String,
    /// When the session stops authenticating.
    pub expires_at: String,
    /// Whether the session may only read.
    pub read_only: bool,
}

/// What a portal session request asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSessionRequest {
    /// The session's length in seconds.
    pub ttl_seconds: u64,
    /// Its settings.
    pub session: PortalSession,
}

impl Default for PortalSessionRequest {
    fn default() -> Self {
        Self {
            ttl_seconds: DEFAULT_TTL_SECONDS,
            session: PortalSession::default(),
        }
    }
}

impl PortalSessionRequest {
    /// Reads a request body; every problem is reported at once, each under its field
    /// (`theme.accent_color` for a theme's part).
    pub fn from_body(mut body: Map<String, Value>) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::new();
        let mut request = Self::default();
        match body.remove("ttl_seconds") {
            None => {}
            Some(Value::Number(number)) => match number.as_i64().map(check_ttl) {
                Some(Ok(seconds)) => request.ttl_seconds = seconds,
                Some(Err(message)) => drop(errors.insert("ttl_seconds".to_owned(), message)),
                None => drop(errors.insert(
                    "ttl_seconds".to_owned(),
                    "must be a whole number of seconds".to_owned(),
                )),
            },
            Some(_) => drop(errors.insert(
                "ttl_seconds".to_owned(),
                "must be a whole number of seconds".to_owned(),
            )),
        }
        match body.remove("read_only") {
            None => {}
            Some(Value::Bool(flag)) => request.session.read_only = flag,
            Some(_) => drop(errors.insert("read_only".to_owned(), "must be a boolean".to_owned())),
        }
        request.session.return_url = optional_text(
            &mut body,
            "return_url",
            "return_url",
            check_browser_url,
            &mut errors,
        );
        match body.remove("theme") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mut theme)) => {
                let parsed = PortalTheme {
                    accent_color: optional_text(
                        &mut theme,
                        "accent_color",
                        "theme.accent_color",
                        check_accent_color,
                        &mut errors,
                    ),
                    logo_url: optional_text(
                        &mut theme,
                        "logo_url",
                        "theme.logo_url",
                        check_browser_url,
                        &mut errors,
                    ),
                    name: optional_text(
                        &mut theme,
                        "name",
                        "theme.name",
                        check_theme_name,
                        &mut errors,
                    ),
                };
                for unknown in theme.keys() {
                    errors.insert(format!("theme.{unknown}"), "unknown field".to_owned());
                }
                request.session.theme = Some(parsed);
            }
            Some(_) => drop(errors.insert("theme".to_owned(), "must be an object".to_owned())),
        }
        for unknown in body.keys() {
            errors.insert(unknown.clone(), "unknown field".to_owned());
        }
        if errors.is_empty() {
            Ok(request)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// An optional string member of `map` checked by `check`; a problem is recorded under
/// `field` (its full name).
fn optional_text(
    map: &mut Map<String, Value>,
    member: &str,
    field: &str,
    check: impl Fn(&str) -> Result<(), String>,
    errors: &mut FieldErrors,
) -> Option<String> {
    match map.remove(member) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match check(&text) {
            Ok(()) => Some(text),
            Err(message) => {
                errors.insert(field.to_owned(), message);
                None
            }
        },
        Some(_) => {
            errors.insert(field.to_owned(), "must be a string".to_owned());
            None
        }
    }
}

/// Mints a portal session for `org_id`; the admin API and `herald portal` both mint here.
/// `public_url` is where the portal is served (`HERALD_PUBLIC_URL`, no trailing slash).
pub async fn mint_portal_session(
    store: &dyn Store,
    org_id: OrgId,
    request: PortalSessionRequest,
    public_url: &str,
) -> Result<PortalSessionResponse, ApiError> {
    store.get_org(org_id).await?;
    let token = ApiKeyToken::generate();
    let now = Timestamp::now();
    let ttl = i64::try_from(request.ttl_seconds).unwrap_or(i64::MAX);
    let expires_at = now.add(chrono::Duration::seconds(ttl));
    let read_only = request.session.read_only;
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id,
        scopes: request.session.scopes(),
        hint: token.hint(),
        created_at: now,
        revoked_at: None,
        expires_at: Some(expires_at),
        portal: Some(request.session),
    };
    store.create_api_key(&key, &token.hash()).await?;
    Ok(PortalSessionResponse {
        id: key.id.to_string(),
        url: format!("{public_url}/portal/#token={}", token.expose()),
        token: token.expose().to_owned(),
        expires_at: expires_at.to_string(),
        read_only,
    })
}

/// `POST /admin/v1/orgs/{id}/portal-sessions`.
pub(crate) async fn create_portal_session_route(
    State(state): State<AppState>,
    _admin: Admin,
    PathId(id): PathId,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<PortalSessionResponse>), ApiError> {
    let org_id: OrgId = path_id(&id)?;
    let request = PortalSessionRequest::from_body(body)?;
    let session = mint_portal_session(
        state.store.as_ref(),
        org_id,
        request,
        &state.config.public_url,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// What the calling credential is and may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The organization the credential acts in.
    pub org_id: String,
    /// Its name.
    pub org_name: String,
    /// What the credential may do.
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// When it stops authenticating; `null` for an API key.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether the credential may only read (no `webhooks:write`).
    pub read_only: bool,
    /// Where a portal's "Back" leads; `null` for an API key.
    pub return_url: Option<String>,
    /// The portal's branding; `null` for an API key.
    pub theme: Option<ThemeResponse>,
}

/// A portal session's branding.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThemeResponse {
    /// `#RRGGBB`, or `null`.
    pub accent_color: Option<String>,
    /// An `https` URL, or `null`.
    pub logo_url: Option<String>,
    /// The platform's name, or `null`.
    pub name: Option<String>,
}

/// Who am I: the organization, scopes and expiry of the calling credential.
#[utoipa::path(
    get, path = "/v1/me", tag = "organization", security(("bearer" = [])),
    responses((status = 200, description = "The calling credential", body = MeResponse), CommonErrors)
)]
pub(crate) async fn get_me(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<MeResponse>, ApiError> {
    let org = state.store.get_org(auth.key.org_id).await?;
    let read_only = !auth.key.has_scope(Scope::WebhooksWrite);
    let portal = auth.key.portal.unwrap_or_default();
    Ok(Json(MeResponse {
        org_id: org.id.to_string(),
        org_name: org.name,
        scopes: auth.key.scopes,
        expires_at: auth.key.expires_at.map(|at| at.to_string()),
        read_only,
        return_url: portal.return_url,
        theme: portal.theme.map(|theme| ThemeResponse {
            accent_color: theme.accent_color,
            logo_url: theme.logo_url,
            name: theme.name,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<PortalSessionRequest, ApiError> {
        let Value::Object(map) = body else {
            panic!("not an object")
        };
        PortalSessionRequest::from_body(map)
    }

    fn field_errors(body: Value) -> FieldErrors {
        match parse(body) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_body_is_an_hour_with_write_access() {
        let request = parse(json!({})).expect("valid");
        assert_eq!(request.ttl_seconds, 3_600);
        assert!(!request.session.read_only);
        assert_eq!(request.session.theme, None);
    }

    #[test]
    fn every_problem_is_reported_under_its_field() {
        let errors = field_errors(json!({
            "ttl_seconds": 59,
            "read_only": "yes",
            "return_url": "http://app.example.com",
            "theme": {"accent_color": "blue", "logo_url": 7, "name": "", "font": "x"},
            "colour": 1,
        }));
        for field in [
            "ttl_seconds",
            "read_only",
            "return_url",
            "theme.accent_color",
            "theme.logo_url",
            "theme.name",
            "theme.font",
            "colour",
        ] {
            assert!(
                errors.contains_key(field),
                "{field} not reported: {errors:?}"
            );
        }
    }

    #[test]
    fn a_full_request_is_kept() {
        let request = parse(json!({
            "ttl_seconds": 86_400,
            "read_only": true,
            "return_url": "https://app.example.com/settings",
            "theme": {"accent_color": "#0a7cff", "logo_url": "https://cdn.example.com/l.svg", "name": "Acme"},
        }))
        .expect("valid");
        assert_eq!(request.ttl_seconds, 86_400);
        assert!(request.session.read_only);
        let theme = request.session.theme.expect("a theme");
        assert_eq!(theme.accent_color.as_deref(), Some("#0a7cff"));
        assert_eq!(theme.name.as_deref(), Some("Acme"));
    }

    #[test]
    fn fractional_and_huge_ttls_are_refused() {
        assert!(field_errors(json!({"ttl_seconds": 60.5})).contains_key("ttl_seconds"));
        assert!(field_errors(json!({"ttl_seconds": 1e30})).contains_key("ttl_seconds"));
        assert!(field_errors(json!({"ttl_seconds": null})).contains_key("ttl_seconds"));
    }
}
