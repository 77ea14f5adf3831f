//! A fresh database for one Herald process: a temporary directory for SQLite, or a database
//! created on the PostgreSQL server at `HERALD_TEST_POSTGRES_URL` and dropped afterwards. It
//! owns nothing of Herald's schema: Herald migrates the empty database itself.

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The PostgreSQL server used when `HERALD_TEST_POSTGRES_URL` is unset.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which storage the Herald under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// An embedded SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on a PostgreSQL server.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// A database that exists for one Herald process. A PostgreSQL database is dropped when this
/// value is dropped; a SQLite file goes with the temporary directory that holds it.
#[derive(Debug)]
pub(crate) struct Database {
    /// What `HERALD_DATABASE_URL` is set to.
    pub(crate) url: String,
    /// A random `HERALD_SECRETS_KEY` (PostgreSQL requires one; SQLite gets one too, so both
    /// backends do the same sealing work).
    pub(crate) secrets_key: String,
    postgres: Option<PostgresDatabase>,
}

#[derive(Debug)]
struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl Database {
    /// Creates an empty database. SQLite's file lives in `directory`, which the caller keeps
    /// for as long as the database is used.
    pub(crate) async fn create(backend: Backend, directory: &Path) -> anyhow::Result<Self> {
        let secrets_key = STANDARD.encode(rand::random::<[u8; 32]>());
        match backend {
            Backend::Sqlite => Ok(Self {
                url: format!("sqlite://{}", directory.join("herald.db").display()),
                secrets_key,
                postgres: None,
            }),
            Backend::Postgres => {
                let admin_url = std::env::var("HERALD_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!("herald_bench_{:016x}", rand::random::<u64>());
                let mut connection = PgConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut connection)
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                let _ = connection.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                Ok(Self {
                    url: format!("{base}/{name}"),
                    secrets_key,
                    postgres: Some(PostgresDatabase {
                        admin_url: admin_url.clone(),
                        name,
                    }),
                })
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let Some(postgres) = self.postgres.take() else {
            return;
        };
        // Drop may run inside the harness's runtime, where blocking on async work is not
        // allowed; a short-lived thread with its own runtime drops the database and is joined,
        // so nothing is left behind when the harness exits.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else {
                return;
            };
            runtime.block_on(async move {
                match PgConnection::connect(&postgres.admin_url).await {
                    Ok(mut connection) => {
                        let drop =
                            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", postgres.name);
                        if let Err(error) = sqlx::query(&drop).execute(&mut connection).await {
                            eprintln!("herald-bench: could not drop {}: {error}", postgres.name);
                        }
                        let _ = connection.close().await;
                    }
                    Err(error) => {
                        eprintln!("herald-bench: could not drop {}: {error}", postgres.name);
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}
