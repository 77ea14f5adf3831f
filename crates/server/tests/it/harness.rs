//! The harness: a real Herald serving on `127.0.0.1:0` with a fresh database per test, and a
//! small HTTP client that speaks to it the way a customer and an operator would.
//!
//! The listener is bound before the server task starts, so the first request simply queues
//! in the accept backlog: no test ever waits or sleeps for readiness. Dropping a [`TestApp`]
//! shuts its server down. Nothing here reaches into the server's internals, except
//! [`TestApp::stored_bytes`] (and its `stored_endpoint_*` forms), which read the database to
//! prove secrets, custom headers and client certificates are not stored in the clear, and
//! [`TestApp::run_sql`], which moves stored instants into the past instead of waiting.
//!
//! Delivery tests add, in submodules: settings applied to the checked configuration
//! (`tuning`: trusted roots, millisecond retry schedules, timeouts, retention), and
//! publishing, feed and metrics helpers with bounded waits and the independent verifier
//! (`delivery`), and the process's trace export pipeline and OTLP receiver (`telemetry`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::secret::SecretText;
use herald_domain::{ApiKeyId, OrgId};
use herald_server::{ServeArgs, StorageArgs};
use herald_testkit::postgres::TestDatabase;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod delivery;
mod raw;
mod reply;
mod telemetry;
mod tuning;

pub(crate) use delivery::{
    Subscribed, assert_event_id, delivering, has_outcome, header, metric, received_json,
    subscribed, verify_delivery, verify_delivery_with, wait_for_received, wait_until, wait_within,
};
pub(crate) use raw::{RawConnection, raw_exchange};
pub(crate) use reply::{
    Reply, endpoint_body, endpoint_body_with, endpoint_path, parse_id, string_at, timestamp_at,
};
pub(crate) use telemetry::otlp_receiver;

/// The admin token every test app is configured with, unless built without one.
pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The secrets key of every test app: base64 of 32 bytes.
const TEST_SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Every scope an organization key can carry.
pub(crate) const ALL_SCOPES: [&str; 3] = ["webhooks:read", "webhooks:write", "org:admin:write"];

/// The storage a test app runs on. Each test body takes one and runs once per variant (see
/// `backend_tests!` in `main.rs`), each time on a fresh database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// An embedded SQLite file in a fresh temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at `HERALD_TEST_POSTGRES_URL`, dropped with
    /// the app.
    Postgres,
}

/// Options of a [`TestApp`]; defaults are the product's, except that the admin API is on.
#[derive(Debug, Clone)]
pub(crate) struct TestAppBuilder {
    backend: Backend,
    admin_token: Option<String>,
    allow_networks: String,
    write_rate_per_minute: u32,
    max_body_bytes: usize,
    event_types: Option<String>,
    event_catalog: Option<PathBuf>,
    schema_enforcement: Option<String>,
    api_versions: String,
    deprecated_api_versions: String,
    portal_frame_ancestors: Option<String>,
    /// `HERALD_EGRESS_PROXY`, parsed as the operator's setting is.
    egress_proxy: Option<String>,
    /// Delivery settings applied to the checked configuration.
    tuning: tuning::Tuning,
}

/// A running Herald and a client for it. Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct TestApp {
    /// Where the server listens, e.g. `http://127.0.0.1:41234`.
    pub(crate) base_url: String,
    /// The same as a socket address, for tests that speak raw HTTP.
    pub(crate) address: SocketAddr,
    backend: Backend,
    database_path: PathBuf,
    database_url: String,
    client: reqwest::Client,
    /// Why the server task ended early, if it did: reported when a request cannot connect.
    server_failure: Arc<Mutex<Option<String>>>,
    /// Dropping the sender completes the server's shutdown future.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server's task, awaited by [`TestApp::restart`] so the next server finds the
    /// database free.
    server_task: Option<tokio::task::JoinHandle<()>>,
    /// Holds the database; removed when the app is dropped.
    _directory: TempDir,
    /// The PostgreSQL database of this app, dropped after the server (declared after
    /// `shutdown`, so the server is told to stop first).
    _postgres_database: Option<TestDatabase>,
}

/// An organization with a key carrying every scope.
#[derive(Debug, Clone)]
pub(crate) struct TestOrg {
    /// The organization.
    pub(crate) id: OrgId,
    /// The key's bearer token.
    pub(crate) key: String,
    /// The key's id, as audit records name it.
    pub(crate) key_id: ApiKeyId,
}

/// A freshly minted key.
#[derive(Debug, Clone)]
pub(crate) struct MintedKey {
    /// Its id.
    pub(crate) id: ApiKeyId,
    /// The bearer token, shown once.
    pub(crate) token: String,
}

impl TestApp {
    /// Starts configuring a test app.
    pub(crate) fn builder() -> TestAppBuilder {
        TestAppBuilder {
            backend: Backend::Sqlite,
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            allow_networks: String::new(),
            write_rate_per_minute: 1_200,
            max_body_bytes: 256 * 1024,
            event_types: None,
            event_catalog: None,
            schema_enforcement: None,
            api_versions: herald_domain::catalog::DEFAULT_API_VERSION.to_owned(),
            deprecated_api_versions: String::new(),
            portal_frame_ancestors: None,
            egress_proxy: None,
            tuning: tuning::Tuning::default(),
        }
    }

    /// A test app with the default options on `backend`.
    pub(crate) async fn spawn(backend: Backend) -> TestApp {
        TestApp::builder().backend(backend).spawn().await
    }

    /// Stops this server, waits until it has let go of the database, and starts a new one,
    /// configured by `builder`, on the same database: a restart with new settings.
    pub(crate) async fn restart(mut self, builder: TestAppBuilder) -> TestApp {
        self.begin_shutdown();
        if let Some(task) = self.server_task.take() {
            task.await.expect("the server task ends without panicking");
        }
        builder
            .backend(self.backend)
            .start(self._directory, self.database_url, self._postgres_database)
            .await
    }

    /// Tells the server to shut down, as SIGTERM does, while the app (and its client) stay.
    pub(crate) fn begin_shutdown(&mut self) {
        drop(self.shutdown.take());
    }

    /// A request to `path` (starting with `/`), without credentials.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base_url))
    }

    /// Sends a request built with [`TestApp::request`] and reads the whole answer.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Reply {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let failure = self
                    .server_failure
                    .lock()
                    .expect("the failure slot is never poisoned")
                    .clone();
                panic!("request failed: {error}; server failure: {failure:?}")
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("reading the response body");
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET path` with an organization key.
    pub(crate) async fn get(&self, key: &str, path: &str) -> Reply {
        self.send(self.request(Method::GET, path).bearer_auth(key))
            .await
    }

    /// `POST path` with an organization key and a JSON body.
    pub(crate) async fn post(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).bearer_auth(key).json(body))
            .await
    }

    /// `POST path` with an organization key and no body.
    pub(crate) async fn post_empty(&self, key: &str, path: &str) -> Reply {
        self.send(self.request(Method::POST, path).bearer_auth(key))
            .await
    }

    /// `PATCH path` with an organization key and a JSON body.
    pub(crate) async fn patch(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.send(
            self.request(Method::PATCH, path)
                .bearer_auth(key)
                .json(body),
        )
        .await
    }

    /// `DELETE path` with an organization key.
    pub(crate) async fn delete(&self, key: &str, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path).bearer_auth(key))
            .await
    }

    /// `GET path` with the admin token.
    pub(crate) async fn admin_get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path).bearer_auth(ADMIN_TOKEN))
            .await
    }

    /// `POST path` with the admin token and a JSON body.
    pub(crate) async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.request(Method::POST, path)
                .bearer_auth(ADMIN_TOKEN)
                .json(body),
        )
        .await
    }

    /// Creates an organization through the admin API.
    pub(crate) async fn create_org(&self, name: &str) -> OrgId {
        let reply = self
            .admin_post("/admin/v1/orgs", &json!({"name": name}))
            .await;
        reply.assert_status(StatusCode::CREATED);
        parse_id(&reply.body["id"])
    }

    /// Mints a key for `org` through the admin API and returns its bearer token.
    pub(crate) async fn create_key(&self, org: OrgId, scopes: &[&str]) -> String {
        self.mint_key(org, scopes).await.token
    }

    /// Mints a key for `org` through the admin API.
    pub(crate) async fn mint_key(&self, org: OrgId, scopes: &[&str]) -> MintedKey {
        let reply = self
            .admin_post(
                &format!("/admin/v1/orgs/{org}/keys"),
                &json!({"scopes": scopes}),
            )
            .await;
        reply.assert_status(StatusCode::CREATED);
        MintedKey {
            id: parse_id(&reply.body["id"]),
            token: string_at(&reply.body, "key"),
        }
    }

    /// A fresh organization and a key with every scope.
    pub(crate) async fn org_with_key(&self) -> TestOrg {
        let id = self.create_org("acme").await;
        let key = self.mint_key(id, &ALL_SCOPES).await;
        TestOrg {
            id,
            key: key.token,
            key_id: key.id,
        }
    }

    /// Creates an endpoint and returns the created object (secret included).
    pub(crate) async fn create_endpoint(&self, key: &str, body: &Value) -> Value {
        let reply = self.post(key, "/v1/webhooks", body).await;
        reply.assert_status(StatusCode::CREATED);
        reply.body
    }

    /// Runs one SQL statement on the app's database behind its back, e.g. to move a stored
    /// instant into the past instead of waiting for it.
    pub(crate) async fn run_sql(&self, statement: &str) {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("opening the test database");
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect("running the statement");
                pool.close().await;
            }
            Backend::Sqlite => {
                let options =
                    sqlx::sqlite::SqliteConnectOptions::new().filename(&self.database_path);
                let pool = sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("opening the test database");
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect("running the statement");
                pool.close().await;
            }
        }
    }

    /// A connection of its own to the app's PostgreSQL database, e.g. to hold a lock the app
    /// must wait for.
    pub(crate) async fn postgres_connection(&self) -> sqlx::PgConnection {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "the app runs on PostgreSQL"
        );
        <sqlx::PgConnection as sqlx::Connection>::connect(&self.database_url)
            .await
            .expect("opening the test database")
    }

    /// The `secret` column of every endpoint row, exactly as stored.
    pub(crate) async fn stored_endpoint_secrets(&self) -> Vec<Vec<u8>> {
        self.stored_bytes("SELECT secret FROM endpoints").await
    }

    /// The non-null values of the endpoints' binary `column`, exactly as stored.
    pub(crate) async fn stored_endpoint_bytes(&self, column: &str) -> Vec<Vec<u8>> {
        self.stored_bytes(&format!(
            "SELECT {column} FROM endpoints WHERE {column} IS NOT NULL"
        ))
        .await
    }

    /// The one bytes column `query` selects, read straight from the database, to prove what is
    /// stored (and what is not).
    pub(crate) async fn stored_bytes(&self, query: &str) -> Vec<Vec<u8>> {
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.database_url)
                    .await
                    .expect("opening the test database");
                let values = sqlx::query_scalar(query)
                    .fetch_all(&pool)
                    .await
                    .expect("reading stored values");
                pool.close().await;
                values
            }
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&self.database_path)
                    .read_only(true);
                let pool = sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("opening the test database");
                let values = sqlx::query_scalar(query)
                    .fetch_all(&pool)
                    .await
                    .expect("reading stored values");
                pool.close().await;
                values
            }
        }
    }
}

impl TestAppBuilder {
    /// The storage backend (SQLite by default).
    pub(crate) fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Networks exempt from the SSRF policy, as `HERALD_ALLOW_NETWORKS` takes them.
    pub(crate) fn allow_networks(mut self, networks: &str) -> Self {
        networks.clone_into(&mut self.allow_networks);
        self
    }

    /// Write requests per organization per minute.
    pub(crate) fn write_rate_per_minute(mut self, limit: u32) -> Self {
        self.write_rate_per_minute = limit;
        self
    }

    /// The largest accepted request body.
    pub(crate) fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The event catalog, comma-separated, instead of the 17 default types.
    pub(crate) fn event_types(mut self, types: &str) -> Self {
        self.event_types = Some(types.to_owned());
        self
    }

    /// `HERALD_EVENT_CATALOG`: a catalog file.
    pub(crate) fn event_catalog(mut self, path: &std::path::Path) -> Self {
        self.event_catalog = Some(path.to_owned());
        self
    }

    /// `HERALD_SCHEMA_ENFORCEMENT`: `off`, `warn` or `reject`.
    pub(crate) fn schema_enforcement(mut self, mode: &str) -> Self {
        self.schema_enforcement = Some(mode.to_owned());
        self
    }

    /// Supported API versions, comma-separated, oldest first.
    pub(crate) fn api_versions(mut self, versions: &str) -> Self {
        versions.clone_into(&mut self.api_versions);
        self
    }

    /// Versions new endpoints may no longer pin, comma-separated.
    pub(crate) fn deprecated_api_versions(mut self, versions: &str) -> Self {
        versions.clone_into(&mut self.deprecated_api_versions);
        self
    }

    /// `HERALD_PORTAL_FRAME_ANCESTORS`.
    pub(crate) fn portal_frame_ancestors(mut self, sources: &str) -> Self {
        self.portal_frame_ancestors = Some(sources.to_owned());
        self
    }

    /// `HERALD_EGRESS_PROXY`: every delivery leaves through the CONNECT proxy at `url`.
    pub(crate) fn egress_proxy(mut self, url: &str) -> Self {
        self.egress_proxy = Some(url.to_owned());
        self
    }

    /// Leaves `HERALD_ADMIN_TOKEN` unset, which turns the admin API off.
    pub(crate) fn without_admin_token(mut self) -> Self {
        self.admin_token = None;
        self
    }

    /// Binds `127.0.0.1:0`, then starts Herald on that listener with a fresh database.
    pub(crate) async fn spawn(self) -> TestApp {
        let directory = tempfile::tempdir().expect("creating a temporary directory");
        let database_path = directory.path().join("herald.db");
        let (database_url, postgres_database) = match self.backend {
            Backend::Sqlite => (format!("sqlite://{}", database_path.display()), None),
            Backend::Postgres => {
                let database = TestDatabase::create("herald_it").await;
                (database.url.clone(), Some(database))
            }
        };
        self.start(directory, database_url, postgres_database).await
    }

    /// Starts Herald on a new loopback listener over the given database.
    async fn start(
        self,
        directory: TempDir,
        database_url: String,
        postgres_database: Option<TestDatabase>,
    ) -> TestApp {
        let database_path = directory.path().join("herald.db");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let address = listener.local_addr().expect("the listener has an address");
        let backend = self.backend;
        let tuning = self.tuning.clone();
        let mut config = self
            .serve_args(database_url.clone(), address)
            .into_config()
            .expect("the test configuration is valid");
        tuning.apply(&mut config, directory.path());

        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server_failure = Arc::new(Mutex::new(None));
        let failure_slot = Arc::clone(&server_failure);
        let server_task = tokio::spawn(async move {
            // The sender is never used: dropping it (with the app, or in `begin_shutdown`) is
            // the signal.
            let shutdown = async move {
                let _ = shutdown_signal.await;
            };
            if let Err(error) = herald_server::run(config, listener, shutdown).await {
                *failure_slot
                    .lock()
                    .expect("the failure slot is never poisoned") = Some(format!("{error:#}"));
            }
        });

        #[expect(
            clippy::disallowed_methods,
            reason = "the test client of the API under test on loopback; deliveries still go through DeliveryClient"
        )]
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the test client");
        TestApp {
            base_url: format!("http://{address}"),
            address,
            backend,
            database_path,
            database_url,
            _postgres_database: postgres_database,
            client,
            server_failure,
            shutdown: Some(shutdown),
            server_task: Some(server_task),
            _directory: directory,
        }
    }

    fn serve_args(self, database_url: String, listen: SocketAddr) -> ServeArgs {
        ServeArgs {
            storage: StorageArgs {
                database_url,
                // SQLite generates its key file; PostgreSQL requires one shared key.
                secrets_key: Some(SecretText::new(TEST_SECRETS_KEY)),
            },
            listen,
            admin_token: self.admin_token.map(SecretText::new),
            allow_networks: self.allow_networks,
            extra_root_certs: None,
            egress_proxy: self.egress_proxy.map(SecretText::new),
            max_body_bytes: self.max_body_bytes,
            write_rate_per_minute: self.write_rate_per_minute,
            event_types: self.event_types,
            event_catalog: self.event_catalog,
            schema_enforcement: self.schema_enforcement.unwrap_or_else(|| "warn".to_owned()),
            api_versions: self.api_versions,
            deprecated_api_versions: self.deprecated_api_versions,
            shutdown_grace_seconds: 1,
            portal_frame_ancestors: self
                .portal_frame_ancestors
                .unwrap_or_else(|| "'none'".to_owned()),
            ..ServeArgs::from_defaults()
        }
    }
}
