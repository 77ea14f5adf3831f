//! Opening the configured storage: SQLite by default, PostgreSQL for `postgres://` URLs.
//! Also owns the embedded default's secrets-key file.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_store::{PostgresOptions, PostgresStore, SecretCipher, SqliteStore, Store};
use rand::RngCore as _;

use herald_domain::secret::{SecretText, redact_url_password};

use crate::config::{StorageArgs, decode_secrets_key};

/// The name of the generated key file, beside the SQLite database.
const KEY_FILE_NAME: &str = "secrets.key";

/// Opens the store that `storage` names, applying migrations.
pub async fn open_store(storage: &StorageArgs) -> anyhow::Result<Arc<dyn Store>> {
    let url = storage.database_url.as_str();
    if is_postgres(url) {
        // Every node must seal and open secrets alike, so the key is never generated here.
        let text = storage.secrets_key.as_ref().map(SecretText::expose).context(
            "HERALD_SECRETS_KEY is required with PostgreSQL: every node must share the same key",
        )?;
        let key = decode_secrets_key(text)?;
        let store = PostgresStore::open(url, &PostgresOptions::default(), SecretCipher::new(&key))
            .await
            .context("connecting to PostgreSQL")?;
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(url)?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = match &storage.secrets_key {
        Some(text) => decode_secrets_key(text.expose())?,
        None => load_or_create_key_file(&path.with_file_name(KEY_FILE_NAME))?,
    };
    let store = SqliteStore::open(&path, SecretCipher::new(&key))
        .await
        .with_context(|| format!("opening SQLite database {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Makes this process the one Herald serving an embedded database, for as long as the
/// returned file stays open (`None` for PostgreSQL, which several nodes share). The worker
/// keeps an embedded database's leases in memory, so a second `herald serve` on the same
/// file would deliver everything twice; it is refused instead. The lock is the kernel's
/// (`flock` on `<database>.lock`), so a process that dies releases it.
pub fn claim_embedded_database(storage: &StorageArgs) -> anyhow::Result<Option<fs::File>> {
    let url = storage.database_url.as_str();
    if is_postgres(url) {
        return Ok(None);
    }
    let database = sqlite_path(url)?;
    let mut name = database.clone().into_os_string();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another herald serve is already using {}: an embedded database serves one Herald \
             (use PostgreSQL to run several nodes)",
            database.display()
        ),
        Err(fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Whether `url` selects the PostgreSQL backend.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The file path of a `sqlite://PATH` or `sqlite:PATH` URL.
fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .with_context(|| {
            format!(
                "HERALD_DATABASE_URL must start with sqlite:// or postgres://, got {:?}",
                redact_url_password(url)
            )
        })?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        bail!("HERALD_DATABASE_URL names no SQLite file");
    }
    Ok(PathBuf::from(path))
}

/// Reads the generated secrets key, or creates it with mode 0600 on first start.
fn load_or_create_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "secrets key file is readable by others");
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return decode_secrets_key(&text).with_context(|| format!("in {}", path.display()));
    }
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{}", STANDARD.encode(key))?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated a secrets key for the embedded database");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_path() {
        assert_eq!(
            sqlite_path("sqlite://herald-data/herald.db").expect("valid"),
            PathBuf::from("herald-data/herald.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/herald.db").expect("valid"),
            PathBuf::from("/var/lib/herald.db")
        );
        assert!(sqlite_path("mysql://x").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[test]
    fn a_rejected_database_url_is_shown_without_its_password() {
        let error = sqlite_path("mysql://herald:hunter2-password@db/herald")
            .expect_err("not a supported scheme");
        let message = format!("{error:#} {error:?}");
        assert!(!message.contains("hunter2-password"), "{message}");
        assert!(
            message.contains("mysql://herald:<redacted>@db/herald"),
            "{message}"
        );
    }

    #[test]
    fn an_embedded_database_serves_one_herald_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = StorageArgs {
            database_url: format!("sqlite://{}", dir.path().join("herald.db").display()),
            secrets_key: None,
        };
        let first = claim_embedded_database(&storage).expect("the first claim succeeds");
        assert!(first.is_some());
        let second = claim_embedded_database(&storage).expect_err("a second serve is refused");
        assert!(
            second.to_string().contains("another herald serve"),
            "unexpected error: {second}"
        );
        drop(first);
        assert!(
            claim_embedded_database(&storage)
                .expect("claimable again once the first is gone")
                .is_some()
        );
        let postgres = StorageArgs {
            database_url: "postgres://herald@db/herald".to_owned(),
            secrets_key: None,
        };
        assert!(
            claim_embedded_database(&postgres)
                .expect("no lock")
                .is_none()
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE_NAME);
        let first = load_or_create_key_file(&path).expect("created");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key_file(&path).expect("reused"), first);
    }
}
