//! A request's log lines carry the trace id of the caller's `traceparent`, in both log formats
//! (docs/operations.md#tracing), with trace export off: an operator follows one request from
//! the publisher's trace into Herald's log without a collector.

mod support;

use reqwest::StatusCode;

use support::{ADMIN_TOKEN, Launcher, TestPki, http_client};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn request_log_lines_carry_the_callers_trace_id_in_text_and_json() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = TestPki::new();
        let ca_path = pki.write_root(dir.path());
        let database_url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let log_path = dir.path().join("herald.log");
        let http = http_client();
        let herald = Launcher::new("herald", &database_url, &ca_path, log_path.clone())
            .env("HERALD_LOG", "info")
            .env("HERALD_LOG_FORMAT", format)
            .start(&http)
            .await;

        let traced = http
            .get(format!("{}/admin/v1/orgs", herald.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .send()
            .await
            .expect("the traced request");
        assert_eq!(traced.status(), StatusCode::OK);
        let untraced = http
            .get(format!("{}/v1/me", herald.base))
            .send()
            .await
            .expect("the untraced request");
        assert_eq!(untraced.status(), StatusCode::UNAUTHORIZED);
        herald.terminate().await;

        let log = std::fs::read_to_string(&log_path).expect("the server log");
        let traced_lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("/admin/v1/orgs"))
            .collect();
        assert!(
            !traced_lines.is_empty() && traced_lines.iter().all(|line| line.contains(TRACE_ID)),
            "{format}: every log line of the traced request names its trace id:\n{log}"
        );
        assert!(
            log.lines()
                .filter(|line| line.contains("/v1/me"))
                .all(|line| !line.contains(TRACE_ID)),
            "{format}: a request without a traceparent is not in the caller's trace:\n{log}"
        );
        if format == "json" {
            for line in &traced_lines {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|error| panic!("a JSON log line ({error}): {line}"));
            }
        }
    }
}
