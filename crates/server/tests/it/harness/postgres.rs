//! Fresh PostgreSQL databases for tests: one per test app, created on the server named by
//! `HERALD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! dropped, with any connections still open, when the app goes away.

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The server the PostgreSQL half of the suite runs on.
fn admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
#[derive(Debug)]
pub(crate) struct TestDatabase {
    /// Its connection URL.
    pub(crate) url: String,
    name: String,
}

/// Creates an empty database with a unique name.
pub(crate) async fn create_database() -> TestDatabase {
    let admin = admin_url();
    let name = format!("herald_it_{}", uuid::Uuid::now_v7().simple());
    let mut connection = PgConnection::connect(&admin).await.unwrap_or_else(|error| {
        panic!("PostgreSQL is not reachable at {admin} ({error}); scripts/start-postgres starts it")
    });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .expect("creating the test database");
    connection.close().await.ok();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    TestDatabase {
        url: format!("{base}/{name}"),
        name,
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where blocking on async work is not allowed;
        // a short-lived thread with its own runtime does the cleanup, and is joined so the
        // database is gone before the test process exits.
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a cleanup runtime");
            runtime.block_on(async move {
                if let Ok(mut connection) = PgConnection::connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(&drop).execute(&mut connection).await;
                    let _ = connection.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
