//! The portal's files (docs/api.md#the-portal): four static assets compiled into the binary
//! from `crates/api/portal/`, served under `/portal/` with a strict Content-Security-Policy.
//! The portal is a client of the `/v1` API; nothing here reads a token or the store.
//!
//! Each file is gzipped once, on first request, and served compressed to clients that accept
//! it. Its SHA-256 is its `ETag`, so a revisit costs a 304; the HTML is `no-store`, the others
//! `no-cache` (revalidated every time: the names are not content-hashed).

use std::io::Write as _;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// One embedded file and its precomputed forms.
struct Asset {
    content_type: &'static str,
    cache_control: &'static str,
    raw: &'static [u8],
    gzipped: Vec<u8>,
    /// The strong validator of the plain bytes, and of the gzipped ones (each encoding is its
    /// own representation).
    etag: HeaderValue,
    gzipped_etag: HeaderValue,
}

impl Asset {
    fn new(content_type: &'static str, cache_control: &'static str, raw: &'static [u8]) -> Self {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        // Writing into a Vec cannot fail.
        let gzipped = encoder
            .write_all(raw)
            .and_then(|()| encoder.finish())
            .unwrap_or_default();
        let digest = hex::encode(Sha256::digest(raw));
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{}{suffix}\"", &digest[..32]))
                .unwrap_or_else(|_| HeaderValue::from_static("\"portal\""))
        };
        Self {
            content_type,
            cache_control,
            raw,
            gzipped,
            etag: tag(""),
            gzipped_etag: tag("-gzip"),
        }
    }
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/html; charset=utf-8",
        "no-store",
        include_bytes!("../portal/index.html"),
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/javascript; charset=utf-8",
        "no-cache",
        include_bytes!("../portal/portal.js"),
    )
});
static STYLES: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "text/css; charset=utf-8",
        "no-cache",
        include_bytes!("../portal/portal.css"),
    )
});
static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "image/svg+xml",
        "no-cache",
        include_bytes!("../portal/favicon.svg"),
    )
});

/// The routes under `/portal`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        // A relative `Location` keeps the `#token=` fragment: the browser carries it over.
        .route("/portal", get(|| async { Redirect::permanent("/portal/") }))
        .route("/portal/", get(index))
        .route(
            "/portal/index.html",
            get(|| async { Redirect::permanent("/portal/") }),
        )
        .route("/portal/portal.js", get(script))
        .route("/portal/portal.css", get(styles))
        .route("/portal/favicon.svg", get(icon))
}

async fn index(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&INDEX, &request, &state)
}

async fn script(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&SCRIPT, &request, &state)
}

async fn styles(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&STYLES, &request, &state)
}

async fn icon(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&ICON, &request, &state)
}

/// The Content-Security-Policy of every portal response. `img-src` admits any `https:` image
/// because a session's theme may name the platform's logo; every other source is this origin.
pub fn content_security_policy(frame_ancestors: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors {frame_ancestors}"
    )
}

fn serve(asset: &'static Asset, request_headers: &HeaderMap, state: &AppState) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(asset.cache_control),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // The setting was checked at start; were it ever unusable, the page is not framable
    // rather than served without a policy.
    let policy = HeaderValue::from_str(&content_security_policy(
        &state.config.portal_frame_ancestors,
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_str(&content_security_policy("'none'"))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
    });
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    let gzip = accepts_gzip(request_headers) && !asset.gzipped.is_empty();
    let etag = if gzip {
        &asset.gzipped_etag
    } else {
        &asset.etag
    };
    headers.insert(header::ETAG, etag.clone());
    if matches_etag(request_headers, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        (headers, asset.gzipped.as_slice()).into_response()
    } else {
        (headers, asset.raw).into_response()
    }
}

/// Whether `Accept-Encoding` admits gzip: named (any case) or `*`, with a weight above 0.
fn accepts_gzip(request_headers: &HeaderMap) -> bool {
    let Some(value) = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let weight_of = |wanted: &str| {
        value.split(',').find_map(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next()?.trim();
            if !name.eq_ignore_ascii_case(wanted) {
                return None;
            }
            let weight = parts
                .filter_map(|parameter| parameter.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(weight)
        })
    };
    weight_of("gzip")
        .or_else(|| weight_of("*"))
        .is_some_and(|weight| weight > 0.0)
}

/// Whether `If-None-Match` names `etag` (weakly, as RFC 9110 asks for this header) or is `*`.
fn matches_etag(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default();
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn gzip_is_sent_only_where_it_is_acceptable() {
        for accepted in ["gzip", "GZIP", "br, gzip;q=0.5", "*", "deflate, *;q=0.1"] {
            assert!(
                accepts_gzip(&with(header::ACCEPT_ENCODING, accepted)),
                "{accepted}"
            );
        }
        for refused in [
            "gzip;q=0",
            "gzip; q=0, identity",
            "br",
            "identity",
            "*;q=0",
            "gzipx",
        ] {
            assert!(
                !accepts_gzip(&with(header::ACCEPT_ENCODING, refused)),
                "{refused}"
            );
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_reads_lists() {
        let etag = HeaderValue::from_static("\"abc\"");
        for matching in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(
                matches_etag(&with(header::IF_NONE_MATCH, matching), &etag),
                "{matching}"
            );
        }
        for other in ["\"abcd\"", "\"abc-gzip\"", "abc"] {
            assert!(
                !matches_etag(&with(header::IF_NONE_MATCH, other), &etag),
                "{other}"
            );
        }
    }
}
