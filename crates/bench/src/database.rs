//! A fresh database for one Herald process: a temporary directory for SQLite, or a database
//! created on the PostgreSQL server at `HERALD_TEST_POSTGRES_URL` and dropped afterwards
//! (`herald_testkit::postgres::TestDatabase`). It owns nothing of Herald's schema: Herald
//! migrates the empty database itself.

use std::fmt;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_testkit::postgres::TestDatabase;

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
    /// Drops the PostgreSQL database when this value is dropped.
    _postgres: Option<TestDatabase>,
}

impl Database {
    /// The PostgreSQL database's name (its backends' process titles carry it); `None` on
    /// SQLite.
    pub(crate) fn postgres_name(&self) -> Option<&str> {
        self._postgres.as_ref().map(TestDatabase::name)
    }

    /// Creates an empty database. SQLite's file lives in `directory`, which the caller keeps
    /// for as long as the database is used.
    pub(crate) async fn create(backend: Backend, directory: &Path) -> anyhow::Result<Self> {
        let secrets_key = STANDARD.encode(rand::random::<[u8; 32]>());
        match backend {
            Backend::Sqlite => Ok(Self {
                url: format!("sqlite://{}", directory.join("herald.db").display()),
                secrets_key,
                _postgres: None,
            }),
            Backend::Postgres => {
                let database = TestDatabase::try_create("herald_bench")
                    .await
                    .context("creating a database on PostgreSQL (HERALD_TEST_POSTGRES_URL)")?;
                Ok(Self {
                    url: database.url.clone(),
                    secrets_key,
                    _postgres: Some(database),
                })
            }
        }
    }
}
