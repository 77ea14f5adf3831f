//! Query strings: arbitrary text as the query of the deliveries feed, through the API's own
//! `QueryParams` extractor (percent-decoding, repeated names), then the page and filter
//! readers of `GET /v1/webhooks/deliveries`. Nothing panics; refusals are 400 or 422
//! envelopes; and whatever passes is in range: limit 1–200, statuses 100–599 with
//! min ≤ max, a known event type, `since`/`until` that round-trip through their wire form.

#![no_main]

use axum::extract::FromRequestParts;
use axum::http::Request;
use axum::response::IntoResponse;
use herald_api::ApiConfig;
use herald_api::error::ApiError;
use herald_api::extract::QueryParams;
use herald_api::routes::deliveries::read_filter;
use herald_api::wire::page_request;
use herald_domain::{FieldErrors, TEST_EVENT_TYPE, Timestamp};
use herald_fuzz::ready;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let Ok(request) = Request::builder()
        .uri(format!("/v1/webhooks/deliveries?{query}"))
        .body(())
    else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    let mut params = match ready(QueryParams::from_request_parts(&mut parts, &())) {
        Ok(params) => params,
        Err(error) => {
            assert!(matches!(error, ApiError::InvalidInput(_)), "{error:?}");
            assert_eq!(error.into_response().status(), 400);
            return;
        }
    };
    let config = ApiConfig::default();
    let mut errors = FieldErrors::new();
    let page = page_request(&mut params, 50, 200, &mut errors);
    let filter = read_filter(&config, &mut params, &mut errors);
    params.report_unknown(&mut errors);
    if !errors.is_empty() {
        assert_eq!(ApiError::Validation(errors).into_response().status(), 422);
        return;
    }
    assert!((1..=200).contains(&page.limit));
    for status in [filter.http_status_min, filter.http_status_max]
        .into_iter()
        .flatten()
    {
        assert!((100..=599).contains(&status));
    }
    if let (Some(min), Some(max)) = (filter.http_status_min, filter.http_status_max) {
        assert!(min <= max);
    }
    if let Some(event_type) = &filter.event_type {
        assert!(event_type == TEST_EVENT_TYPE || config.catalog.contains(event_type));
    }
    for at in [filter.since, filter.until].into_iter().flatten() {
        assert_eq!(Timestamp::parse(&at.to_string()), Some(at));
    }
});
