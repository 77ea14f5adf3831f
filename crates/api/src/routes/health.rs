//! Liveness and readiness probes. Neither needs authentication.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::{ApiError, RareLog};

/// Failed readiness checks are logged at most once a second, however often they are made.
static READINESS_WARNINGS: RareLog = RareLog::new();
use crate::state::AppState;

/// `GET /healthz`: the process is up and serving.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: storage answers and accepts writes (a full disk makes it refuse them while
/// reads go on); otherwise 503 `UNAVAILABLE` with `Retry-After`.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|error| {
        if let Some(suppressed) = READINESS_WARNINGS.allow() {
            tracing::warn!(error = %crate::error::error_chain(&error), suppressed, "readiness check failed");
        }
        ApiError::Unavailable
    })?;
    Ok(Json(json!({"status": "ready"})))
}
