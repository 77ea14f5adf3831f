//! The admin commands and the admin API apply one set of rules (issue 12): `herald events
//! publish` refuses what `POST /admin/v1/events` refuses, with the same error envelope (less
//! the request id), and a database that cannot be reached is `UNAVAILABLE` for both;
//! `herald events publish --traceparent` takes what the API's header takes and refuses the rest;
//! `herald endpoints recover` starts the recovery the API starts and refuses what it refuses;
//! `herald portal` mints a session the API accepts. Both read the catalog file
//! (`HERALD_EVENT_CATALOG`) and enforce its schemas alike.

mod support;

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{Value, json};

use support::{ADMIN_TOKEN, EVENT_TYPE, Launcher, Tenant, TestPki, http_client};

/// Small, so an oversized `data` fits on a command line.
const MAX_EVENT_BYTES: &str = "1024";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_events_publish_refuses_what_the_admin_api_refuses_with_the_same_error() {
    let running = Running::start("rules").await;
    let (database_url, http, herald, tenant) = (
        &running.database_url,
        &running.http,
        &running.herald,
        &running.tenant,
    );
    let oversized = json!({ "pad": "x".repeat(2_000) }).to_string();
    let long_key = "k".repeat(256);
    let long_ordering_key = "k".repeat(129);

    // Each case: its data, and a field with the flag that sets it and its value.
    for (case, data, field) in [
        ("oversized data", oversized.as_str(), None),
        (
            "an over-long idempotency key",
            "{\"n\": 1}",
            Some(("idempotency_key", "--idempotency-key", long_key.as_str())),
        ),
        (
            "an over-long ordering key",
            "{\"n\": 1}",
            Some(("ordering_key", "--ordering-key", long_ordering_key.as_str())),
        ),
    ] {
        // The admin API's answer.
        let mut body = json!({"org_id": tenant.org_id, "type": EVENT_TYPE, "data": serde_json::from_str::<Value>(data).expect("JSON")});
        if let Some((name, _, value)) = field {
            body[name] = json!(value);
        }
        let response = http
            .post(format!("{}/admin/v1/events", herald.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("publish through the API");
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{case}"
        );
        let mut api: Value = response.json().await.expect("the envelope");
        api["error"]
            .as_object_mut()
            .expect("`error` object")
            .remove("request_id");

        // The command's answer, on the same database.
        let extra = field.map(|(_, flag, value)| vec![flag, value]);
        let output = herald_publish(
            &tenant.org_id,
            data,
            &extra.unwrap_or_default(),
            database_url,
        );
        assert!(!output.status.success(), "{case}: the command must fail");
        assert_eq!(
            envelope(&output),
            api,
            "{case}: the command and the API disagree"
        );
    }

    // A valid event goes through the same path.
    let published = herald_publish(&tenant.org_id, "{\"n\": 2}", &[], database_url);
    assert!(
        published.status.success(),
        "a valid event is published: {}",
        String::from_utf8_lossy(&published.stderr)
    );

    // `--traceparent` takes what the API's header takes, and refuses (where the API ignores)
    // anything else, naming the flag's field.
    let publish_traced = |traceparent: &str| {
        herald_publish(
            &tenant.org_id,
            "{\"n\": 3}",
            &["--traceparent", traceparent],
            database_url,
        )
    };
    let traced = publish_traced("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert!(
        traced.status.success(),
        "a valid traceparent is taken: {}",
        String::from_utf8_lossy(&traced.stderr)
    );
    let refused = publish_traced("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
    assert!(
        !refused.status.success(),
        "an invalid traceparent is refused"
    );
    let error = envelope(&refused);
    assert_eq!(error["error"]["code"], "VALIDATION_FAILED", "{error}");
    assert!(
        error["error"]["details"]["traceparent"].is_string(),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_endpoints_recover_starts_what_the_api_starts_and_refuses_what_it_refuses() {
    let running = Running::start("recover").await;
    let (database_url, http, herald, tenant) = (
        &running.database_url,
        &running.http,
        &running.herald,
        &running.tenant,
    );
    let created = http
        .post(format!("{}/v1/webhooks", herald.base))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"url": "https://receiver.example/hook", "events": [EVENT_TYPE]}))
        .send()
        .await
        .expect("create an endpoint");
    assert_eq!(created.status(), StatusCode::CREATED);
    let endpoint: Value = created.json().await.expect("the endpoint");
    let endpoint_id = endpoint["id"].as_str().expect("an id").to_owned();
    let recover = |since: &str, extra: &[&str]| {
        let mut args = vec![
            "endpoints",
            "recover",
            "--org",
            &tenant.org_id,
            "--endpoint",
            &endpoint_id,
            "--since",
        ];
        args.push(since);
        args.extend_from_slice(extra);
        herald_command(&args, database_url)
    };
    let long_ago = "2026-01-01T00:00:00Z";
    let recent = chrono_free_recent();

    // A dry run through the command is a recovery the API can read.
    let output = recover(&recent, &["--dry-run"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let started: Value = serde_json::from_slice(&output.stdout).expect("the recovery as JSON");
    assert_eq!(started["status"], "done", "{started}");
    assert_eq!(started["dry_run"], true, "{started}");
    assert_eq!(started["matched"], 0, "{started}");
    let read = http
        .get(format!(
            "{}/v1/webhooks/recoveries/{}",
            herald.base,
            started["recovery_id"].as_str().expect("an id")
        ))
        .bearer_auth(&tenant.api_key)
        .send()
        .await
        .expect("read the recovery");
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "the API reads what the command started"
    );

    // A window older than retention: the same 422 from both.
    let output = recover(long_ago, &[]);
    assert!(!output.status.success());
    let api = api_error(
        http,
        &herald.base,
        &tenant.api_key,
        &endpoint_id,
        &json!({"since": long_ago}),
    )
    .await;
    assert_eq!(
        envelope(&output),
        api,
        "too old: the command and the API disagree"
    );

    // An inactive endpoint: the same 409 from both.
    let patched = http
        .patch(format!("{}/v1/webhooks/{endpoint_id}", herald.base))
        .bearer_auth(&tenant.api_key)
        .json(&json!({"active": false}))
        .send()
        .await
        .expect("deactivate");
    assert_eq!(patched.status(), StatusCode::OK);
    let output = recover(&recent, &[]);
    assert!(!output.status.success());
    let api = api_error(
        http,
        &herald.base,
        &tenant.api_key,
        &endpoint_id,
        &json!({"since": recent}),
    )
    .await;
    assert_eq!(api["error"]["code"], "ENDPOINT_INACTIVE", "{api}");
    assert_eq!(
        envelope(&output),
        api,
        "inactive: the command and the API disagree"
    );
}

/// An RFC 3339 instant a minute ago, from the system clock.
fn chrono_free_recent() -> String {
    let output = Command::new("date")
        .args(["-u", "-d", "1 minute ago", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("run date");
    String::from_utf8(output.stdout)
        .expect("ASCII")
        .trim()
        .to_owned()
}

/// The API's error envelope for a recovery request, less its request id.
async fn api_error(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    endpoint_id: &str,
    body: &Value,
) -> Value {
    let response = http
        .post(format!("{base}/v1/webhooks/{endpoint_id}/recover"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("recover through the API");
    assert!(response.status().is_client_error(), "{}", response.status());
    let mut envelope: Value = response.json().await.expect("the envelope");
    envelope["error"]
        .as_object_mut()
        .expect("`error` object")
        .remove("request_id");
    envelope
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_portal_mints_a_session_the_api_accepts_and_refuses_what_the_api_refuses() {
    let running = Running::start("portal").await;
    let (database_url, http, herald, tenant) = (
        &running.database_url,
        &running.http,
        &running.herald,
        &running.tenant,
    );

    // A read-only session for ten minutes, linked under the public URL given.
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    let output = command
        .args([
            "portal",
            "--org",
            &tenant.org_id,
            "--ttl",
            "600",
            "--read-only",
        ])
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_PUBLIC_URL", "https://webhooks.example.com/")
        .env("HERALD_LOG", "error")
        .output()
        .expect("run herald portal");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let session: Value = serde_json::from_slice(&output.stdout).expect("the session as JSON");
    let token = session["token"].as_str().expect("a token");
    assert_eq!(
        session["url"],
        json!(format!(
            "https://webhooks.example.com/portal/#token={token}"
        ))
    );
    assert_eq!(session["read_only"], json!(true));
    let me: Value = http
        .get(format!("{}/v1/me", herald.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /v1/me")
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["org_id"], json!(tenant.org_id));
    assert_eq!(me["scopes"], json!(["webhooks:read"]));
    assert_eq!(me["expires_at"], session["expires_at"]);

    // Out of bounds, or for an organization that does not exist: refused as the API refuses.
    let too_short = herald_command(
        &["portal", "--org", &tenant.org_id, "--ttl", "59"],
        database_url,
    );
    assert!(!too_short.status.success());
    assert!(
        String::from_utf8_lossy(&too_short.stderr).contains("--ttl must be between 60 and 86400"),
        "{}",
        String::from_utf8_lossy(&too_short.stderr)
    );
    let unknown = herald_command(
        &["portal", "--org", "01a20000-0000-7000-8000-000000000000"],
        database_url,
    );
    assert!(!unknown.status.success());
    assert_eq!(
        envelope(&unknown),
        json!({"success": false, "error": {"code": "NOT_FOUND", "message": "not found"}})
    );
}

#[test]
fn a_database_that_cannot_be_reached_is_unavailable_as_on_the_admin_api() {
    // Nothing listens on port 1: the connection is refused at once.
    let output = herald_command(
        &[
            "events",
            "publish",
            "--org",
            "01a20000-0000-7000-8000-000000000000",
            "--type",
            EVENT_TYPE,
            "--data",
            "{}",
        ],
        "postgres://postgres@127.0.0.1:1/herald",
    );
    assert!(!output.status.success());
    assert_eq!(
        envelope(&output),
        json!({"success": false, "error": {"code": "UNAVAILABLE", "message": "service unavailable"}}),
        "the admin API answers a database outage with 503 UNAVAILABLE"
    );
}

/// A `herald serve` on a fresh SQLite database with the test's event cap, and a tenant in it.
struct Running {
    database_url: String,
    http: reqwest::Client,
    herald: support::Herald,
    tenant: Tenant,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(tenant: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = TestPki::new();
        let ca_path = pki.write_root(dir.path());
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let http = http_client();
        let herald = Launcher::new(
            "herald",
            &database_url,
            &ca_path,
            dir.path().join("herald.log"),
        )
        .env("HERALD_MAX_EVENT_BYTES", MAX_EVENT_BYTES)
        .start(&http)
        .await;
        let tenant = Tenant::create(&http, &herald, tenant).await;
        Self {
            database_url,
            http,
            herald,
            tenant,
            _dir: dir,
        }
    }
}

#[test]
fn herald_events_publish_reads_the_catalog_file_and_enforces_its_schemas() {
    // Arrange: an organization on a fresh database, and a catalog file with a schema.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(
        &catalog,
        "- name: wallet.balance_low\n  description: Low.\n  schema: {properties: {balance: {type: string}}}\n",
    )
    .expect("writing the catalog file");
    let created = herald_command(&["orgs", "create", "--name", "acme"], &database_url);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let org: Value = serde_json::from_slice(&created.stdout).expect("the organization");
    let org_id = org["id"].as_str().expect("an id").to_owned();
    let publish = |data: &str, enforcement: &str, catalog_text: Option<&str>| {
        if let Some(text) = catalog_text {
            std::fs::write(&catalog, text).expect("rewriting the catalog file");
        }
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "events",
                "publish",
                "--org",
                &org_id,
                "--type",
                "wallet.balance_low",
            ])
            .args(["--data", data])
            .env_clear()
            .env("HERALD_DATABASE_URL", &database_url)
            .env("HERALD_EVENT_CATALOG", &catalog)
            .env("HERALD_SCHEMA_ENFORCEMENT", enforcement)
            .env("HERALD_LOG", "error")
            .output()
            .expect("run herald")
    };

    // Act
    let refused = publish(r#"{"balance": 3}"#, "reject", None);
    let warned = publish(r#"{"balance": 3}"#, "warn", None);
    let broken = publish(
        r#"{"balance": "3"}"#,
        "reject",
        Some("- name: wallet.balance_low\n  description: Low.\n  schema: {type: 7}\n"),
    );

    // Assert
    assert!(!refused.status.success());
    assert_eq!(
        envelope(&refused)["error"]["details"]["data"],
        json!(r#"/balance: value is not of type "string""#)
    );
    assert!(
        warned.status.success(),
        "{}",
        String::from_utf8_lossy(&warned.stderr)
    );
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("event type wallet.balance_low: schema does not compile"),
        "{stderr}"
    );
}

/// Runs `herald ARGS` on `database_url` with the test's event cap (and, on PostgreSQL, which
/// requires one, a secrets key).
fn herald_command(args: &[&str], database_url: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    if database_url.starts_with("postgres") {
        command.env("HERALD_SECRETS_KEY", support::random_secrets_key());
    }
    command
        .args(args)
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_MAX_EVENT_BYTES", MAX_EVENT_BYTES)
        .env("HERALD_LOG", "error")
        .output()
        .expect("run herald")
}

/// Runs `herald events publish` of an `EVENT_TYPE` event with `data` for `org_id`,
/// with `extra` flags.
fn herald_publish(org_id: &str, data: &str, extra: &[&str], database_url: &str) -> Output {
    let mut args = vec![
        "events", "publish", "--org", org_id, "--type", EVENT_TYPE, "--data", data,
    ];
    args.extend_from_slice(extra);
    herald_command(&args, database_url)
}

/// The error envelope a failed command printed on stderr (`Error: {…}`).
fn envelope(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find_map(|line| line.strip_prefix("Error: "))
        .unwrap_or_else(|| panic!("no `Error:` line in {stderr}"));
    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
}
