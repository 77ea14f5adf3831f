//! The portal's server side (docs/api.md#the-portal): portal sessions are organization
//! credentials that expire, `GET /v1/me` tells a token what it may do, `GET /v1/event-types`
//! lists the catalog, and `/portal/` serves the embedded files under a strict CSP. The portal
//! itself is walked in a real browser by `scripts/test-portal`.

use herald_domain::Timestamp;
use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, LOCATION,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, endpoint_body, string_at};

backend_tests!(
    a_session_is_an_organization_credential_that_expires,
    a_read_only_session_reads_and_cannot_write,
    session_requests_are_validated,
    me_describes_an_api_key,
    sessions_are_not_listed_with_the_keys,
    a_session_can_be_revoked_before_it_expires,
    the_catalog_lists_every_type_with_its_meaning,
    the_portal_is_served_under_a_strict_policy,
);

/// Mints a session for `org` and returns the answer.
async fn mint(app: &TestApp, org: &str, body: &Value) -> Value {
    let reply = app
        .admin_post(&format!("/admin/v1/orgs/{org}/portal-sessions"), body)
        .await;
    reply.assert_status(StatusCode::CREATED);
    reply.body
}

async fn a_session_is_an_organization_credential_that_expires(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let before = Timestamp::now();

    // Act
    let session = mint(
        &app,
        &org.id.to_string(),
        &json!({
            "return_url": "https://app.example.com/settings/webhooks",
            "theme": {"accent_color": "#0a7cff", "name": "Acme Cloud"},
        }),
    )
    .await;

    // Assert: the link carries the token in its fragment, and the session lasts an hour.
    let token = string_at(&session, "token");
    assert!(token.starts_with("am_live_"), "{session}");
    assert_eq!(
        string_at(&session, "url"),
        format!("{}/portal/#token={token}", app.base_url)
    );
    assert_eq!(session["read_only"], json!(false));
    let expires_at = Timestamp::parse(&string_at(&session, "expires_at")).expect("a timestamp");
    let lasts = expires_at.unix_seconds() - before.unix_seconds();
    assert!((3_599..=3_601).contains(&lasts), "lasts {lasts} s");

    assert!(!string_at(&session, "id").is_empty());
    let me = app.get(&token, "/v1/me").await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.body["org_id"], json!(org.id.to_string()));
    assert_eq!(me.body["org_name"], json!("acme"));
    assert_eq!(
        me.body["scopes"],
        json!(["webhooks:read", "webhooks:write"])
    );
    assert_eq!(me.body["expires_at"], session["expires_at"]);
    assert_eq!(me.body["read_only"], json!(false));
    assert_eq!(
        me.body["return_url"],
        json!("https://app.example.com/settings/webhooks")
    );
    assert_eq!(
        me.body["theme"],
        json!({"accent_color": "#0a7cff", "logo_url": null, "name": "Acme Cloud"})
    );

    // It acts in its organization, writes, and never holds org:admin:write.
    let created = app.post(&token, "/v1/webhooks", &endpoint_body()).await;
    created.assert_status(StatusCode::CREATED);
    app.post(&token, "/v1/webhook-secret/rotate", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");

    // After `expires_at` every call is a 401 (the expiry is moved into the past instead of
    // waiting an hour).
    app.run_sql("UPDATE api_keys SET expires_at = 1 WHERE portal IS NOT NULL")
        .await;
    app.get(&token, "/v1/me")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    app.get(&token, "/v1/webhooks")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // The organization's own key is untouched.
    app.get(&org.key, "/v1/webhooks")
        .await
        .assert_status(StatusCode::OK);
}

async fn a_read_only_session_reads_and_cannot_write(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let endpoint = app.create_endpoint(&org.key, &endpoint_body()).await;
    let id = string_at(&endpoint, "id");

    // Act
    let session = mint(&app, &org.id.to_string(), &json!({"read_only": true})).await;
    let token = string_at(&session, "token");

    // Assert
    assert_eq!(session["read_only"], json!(true));
    let me = app.get(&token, "/v1/me").await;
    assert_eq!(me.body["scopes"], json!(["webhooks:read"]));
    assert_eq!(me.body["read_only"], json!(true));
    app.get(&token, &format!("/v1/webhooks/{id}"))
        .await
        .assert_status(StatusCode::OK);
    app.get(&token, "/v1/webhooks/deliveries")
        .await
        .assert_status(StatusCode::OK);
    for (method, path, body) in [
        (Method::POST, "/v1/webhooks".to_owned(), endpoint_body()),
        (
            Method::PATCH,
            format!("/v1/webhooks/{id}"),
            json!({"active": false}),
        ),
        (Method::DELETE, format!("/v1/webhooks/{id}"), Value::Null),
        (Method::POST, format!("/v1/webhooks/{id}/test"), json!({})),
        (
            Method::POST,
            format!("/v1/webhooks/{id}/rotate-secret"),
            json!({}),
        ),
    ] {
        let mut request = app.request(method.clone(), &path).bearer_auth(&token);
        if !body.is_null() {
            request = request.json(&body);
        }
        app.send(request)
            .await
            .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    let after = app.get(&org.key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        after.body["active"],
        json!(true),
        "the refused PATCH changed nothing"
    );
}

async fn session_requests_are_validated(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await.id.to_string();
    let path = format!("/admin/v1/orgs/{org}/portal-sessions");

    // Act / Assert: the bounds of ttl_seconds are inclusive.
    for (ttl, lasts) in [(60, 60), (86_400, 86_400)] {
        let before = Timestamp::now().unix_seconds();
        let session = mint(&app, &org, &json!({"ttl_seconds": ttl})).await;
        let expires_at = Timestamp::parse(&string_at(&session, "expires_at")).expect("time");
        let actual = expires_at.unix_seconds() - before;
        assert!(
            (lasts - 1..=lasts + 1).contains(&actual),
            "ttl {ttl}: {actual}"
        );
    }
    for (body, field) in [
        (json!({"ttl_seconds": 59}), "ttl_seconds"),
        (json!({"ttl_seconds": 86_401}), "ttl_seconds"),
        (json!({"ttl_seconds": "3600"}), "ttl_seconds"),
        (json!({"read_only": 1}), "read_only"),
        (
            json!({"return_url": "http://app.example.com"}),
            "return_url",
        ),
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (
            json!({"theme": {"accent_color": "red"}}),
            "theme.accent_color",
        ),
        (
            json!({"theme": {"logo_url": "http://cdn.example.com/logo.png"}}),
            "theme.logo_url",
        ),
        (json!({"theme": {"name": "x".repeat(101)}}), "theme.name"),
        (json!({"theme": {"font": "Comic Sans"}}), "theme.font"),
        (json!({"theme": "dark"}), "theme"),
        (json!({"scopes": ["org:admin:write"]}), "scopes"),
    ] {
        let reply = app.admin_post(&path, &body).await;
        reply.assert_validation(field);
    }

    // An unknown or malformed organization is a 404, and the route is the operator's.
    let unknown = "/admin/v1/orgs/0190a3c4-0000-7000-8000-000000000000/portal-sessions";
    app.admin_post(unknown, &json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.admin_post("/admin/v1/orgs/not-an-id/portal-sessions", &json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    let org_key = app.org_with_key().await.key;
    app.post(&org_key, &path, &json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn me_describes_an_api_key(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let reader = app.create_key(org.id, &["webhooks:read"]).await;
    let admin_only = app.create_key(org.id, &["org:admin:write"]).await;

    // Act
    let full = app.get(&org.key, "/v1/me").await;
    let read = app.get(&reader, "/v1/me").await;
    let admin = app.get(&admin_only, "/v1/me").await;

    // Assert: no scope is needed, and an API key neither expires nor has a theme.
    full.assert_status(StatusCode::OK);
    assert_eq!(full.body["expires_at"], Value::Null);
    assert_eq!(full.body["return_url"], Value::Null);
    assert_eq!(full.body["theme"], Value::Null);
    assert_eq!(full.body["read_only"], json!(false));
    assert_eq!(
        full.body["scopes"],
        json!(["webhooks:read", "webhooks:write", "org:admin:write"])
    );
    assert_eq!(read.body["read_only"], json!(true));
    admin.assert_status(StatusCode::OK);
    assert_eq!(admin.body["scopes"], json!(["org:admin:write"]));
    app.get("am_live_0123456789012345678901234567890123456789", "/v1/me")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn sessions_are_not_listed_with_the_keys(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    mint(&app, &org.id.to_string(), &json!({})).await;

    // Act
    let keys = app
        .admin_get(&format!("/admin/v1/orgs/{}/keys", org.id))
        .await;

    // Assert
    keys.assert_status(StatusCode::OK);
    let ids: Vec<&Value> = keys.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|key| &key["id"])
        .collect();
    assert_eq!(ids, vec![&json!(org.key_id.to_string())], "{keys}");
}

async fn a_session_can_be_revoked_before_it_expires(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let session = mint(&app, &org.id.to_string(), &json!({})).await;
    let token = string_at(&session, "token");
    app.get(&token, "/v1/me")
        .await
        .assert_status(StatusCode::OK);

    // Act: a leaked link is ended with the key revocation the admin API already has.
    let revoked = app
        .admin_post(
            &format!("/admin/v1/keys/{}/revoke", string_at(&session, "id")),
            &json!({}),
        )
        .await;

    // Assert
    revoked.assert_status(StatusCode::OK);
    app.get(&token, "/v1/me")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

async fn the_catalog_lists_every_type_with_its_meaning(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let org = app.org_with_key().await;
    let reader = app.create_key(org.id, &["webhooks:read"]).await;

    // Act
    let catalog = app.get(&reader, "/v1/event-types").await;

    // Assert
    catalog.assert_status(StatusCode::OK);
    let types = catalog.body["data"].as_array().expect("a list");
    assert_eq!(catalog.body["meta"]["total"], json!(types.len()));
    assert_eq!(catalog.body["meta"]["next_cursor"], Value::Null);
    assert_eq!(types.len(), 20, "17 default and 3 operational types");
    for name in [
        "wallet.balance_low",
        "endpoint.disabled",
        "delivery.exhausted",
    ] {
        let entry = types
            .iter()
            .find(|entry| entry["name"] == json!(name))
            .unwrap_or_else(|| panic!("{name} is missing: {catalog}"));
        assert!(
            entry["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
        assert_eq!(entry["deprecated"], json!(false));
    }
    assert!(
        types
            .iter()
            .all(|entry| entry["name"] != json!("webhook.test"))
    );
    let admin_only = app.create_key(org.id, &["org:admin:write"]).await;
    app.get(&admin_only, "/v1/event-types")
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
}

async fn the_portal_is_served_under_a_strict_policy(backend: Backend) {
    // Arrange
    let app = TestApp::builder()
        .backend(backend)
        .portal_frame_ancestors("https://app.example.com")
        .spawn()
        .await;

    // Act
    #[expect(
        clippy::disallowed_methods,
        reason = "a client that shows the redirect itself; it dials only the local app"
    )]
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let bare = no_redirects
        .get(format!("{}/portal", app.base_url))
        .send()
        .await
        .expect("GET /portal");
    let page = app.send(app.request(Method::GET, "/portal/")).await;
    let gzipped = app
        .send(
            app.request(Method::GET, "/portal/portal.js")
                .header(ACCEPT_ENCODING, "br, gzip;q=0.8"),
        )
        .await;

    // Assert: `/portal` leads to `/portal/` relatively, so the fragment survives.
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()[LOCATION], "/portal/");
    page.assert_status(StatusCode::OK);
    assert_eq!(page.headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(page.headers[CACHE_CONTROL], "no-store");
    let policy = page.headers[CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors https://app.example.com",
    ] {
        assert!(policy.contains(directive), "{directive} missing: {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert!(page.text.contains("portal.js"), "the page loads its script");
    assert!(!page.text.contains("<script>"), "no inline script");

    assert_eq!(gzipped.headers[CONTENT_ENCODING], "gzip");
    assert_eq!(
        gzipped.headers[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(gzipped.headers.contains_key(CONTENT_SECURITY_POLICY));

    // A revisit with the same ETag costs a 304 and no body; the plain bytes are another
    // representation, with their own ETag.
    let etag = gzipped.headers[ETAG].clone();
    let revisit = app
        .send(
            app.request(Method::GET, "/portal/portal.js")
                .header(ACCEPT_ENCODING, "gzip")
                .header(IF_NONE_MATCH, etag.clone()),
        )
        .await;
    assert_eq!(revisit.status, StatusCode::NOT_MODIFIED);
    assert!(revisit.text.is_empty());
    let plain = app
        .send(
            app.request(Method::GET, "/portal/portal.js")
                .header(IF_NONE_MATCH, etag),
        )
        .await;
    plain.assert_status(StatusCode::OK);
    assert!(!plain.headers.contains_key(CONTENT_ENCODING));
    assert_ne!(plain.headers[ETAG], gzipped.headers[ETAG]);

    // Anything else under /portal is the API's 404 envelope.
    app.send(app.request(Method::GET, "/portal/secrets.txt"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}
