//! First start: with no organization at all, create `default` and a key with every scope, and
//! print both once on stderr so a newcomer can call the API straight away.

use anyhow::Context as _;
use herald_api::routes::admin::mint_api_key;
use herald_domain::{Org, OrgId, Scope, Timestamp};
use herald_store::Store;

/// Creates the `default` organization and an all-scope key when the database has none.
pub async fn ensure_default_org(store: &dyn Store) -> anyhow::Result<()> {
    let org = Org {
        id: OrgId::new(),
        name: "default".to_owned(),
        created_at: Timestamp::now(),
    };
    // Atomic: of several nodes starting together on an empty database, exactly one creates it.
    if !store
        .create_first_org(&org)
        .await
        .context("creating the default organization")?
    {
        return Ok(());
    }
    let (_key, token) = mint_api_key(store, org.id, Scope::ALL.to_vec())
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    // Deliberately stderr and not the log: the key is shown once and must not be captured
    // by log shipping.
    eprintln!(
        "\nHerald created organization \"default\" ({}) and an API key with every scope.\n\
         It is shown only this once; keep it:\n\n    {}\n",
        org.id,
        token.expose()
    );
    Ok(())
}
