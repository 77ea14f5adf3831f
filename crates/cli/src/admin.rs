//! Admin commands acting on the configured database directly. Each prints one JSON value on
//! stdout, so scripts can parse it.

#![expect(
    clippy::print_stdout,
    reason = "the admin commands' output is JSON on stdout"
)]

use clap::Subcommand;
use herald_api::routes::admin::{ApiKeyResponse, OrgResponse, create_org, mint_api_key};
use herald_api::routes::events::PublishResponse;
use herald_domain::scope::parse_scopes;
use herald_domain::{ApiKeyId, Event, EventCatalog, EventId, EventOrigin, OrgId, Timestamp};
use herald_server::StorageArgs;
use serde::Serialize;

/// `herald orgs …`.
#[derive(Debug, Subcommand)]
pub(crate) enum OrgsCommand {
    /// Create an organization.
    Create {
        /// Its display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List organizations.
    List {
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// `herald keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Mint an API key; the key is printed once.
    Create {
        /// The organization the key acts in.
        #[arg(long)]
        org: OrgId,
        /// Comma-separated scopes: webhooks:read, webhooks:write, org:admin:write.
        #[arg(long)]
        scopes: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// List an organization's keys (never the keys themselves).
    List {
        /// The organization.
        #[arg(long)]
        org: OrgId,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Revoke a key; it fails on its very next request.
    Revoke {
        /// The key's id.
        key_id: ApiKeyId,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// `herald events …`.
#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Publish one event; prints its id and how many endpoints it fanned out to.
    Publish {
        /// The organization.
        #[arg(long)]
        org: OrgId,
        /// The event type, from the catalog.
        #[arg(long = "type")]
        event_type: String,
        /// The event's `data`, a JSON object.
        #[arg(long)]
        data: String,
        /// Publishing the same key again within 24 hours returns the first event.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The event-type catalog, comma-separated; the contract's 17 types by default.
        #[arg(long, env = "HERALD_EVENT_TYPES")]
        event_types: Option<String>,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

pub(crate) async fn run_events(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Publish {
        org,
        event_type,
        data,
        idempotency_key,
        event_types,
        storage,
    } = command;
    let catalog = match event_types {
        Some(list) => {
            EventCatalog::new(list.split(',').map(|item| item.trim().to_owned()).collect())
        }
        None => EventCatalog::default(),
    };
    if !catalog.contains(&event_type) {
        anyhow::bail!("unknown event type: {event_type}");
    }
    let parsed: serde_json::Value = serde_json::from_str(&data)
        .map_err(|error| anyhow::anyhow!("--data is not JSON: {error}"))?;
    if !parsed.is_object() {
        anyhow::bail!("--data must be a JSON object");
    }
    let store = herald_server::storage::open_store(&storage).await?;
    store
        .get_org(org)
        .await
        .map_err(|_| anyhow::anyhow!("unknown organization: {org}"))?;
    let event = Event {
        id: EventId::new(),
        org_id: org,
        event_type,
        // Stored as given, so receivers get the bytes the operator wrote.
        data: data.trim().to_owned(),
        idempotency_key,
        origin: EventOrigin::Publish,
        created_at: Timestamp::now(),
    };
    let published = store.publish_events(std::slice::from_ref(&event)).await?;
    let published = published
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("publish returned no answer"))?;
    print_json(&PublishResponse::from(published))
}

pub(crate) async fn run_orgs(command: OrgsCommand) -> anyhow::Result<()> {
    match command {
        OrgsCommand::Create { name, storage } => {
            let store = herald_server::storage::open_store(&storage).await?;
            let org = create_org(store.as_ref(), &name).await.map_err(api_error)?;
            print_json(&OrgResponse::from(org))
        }
        OrgsCommand::List { storage } => {
            let store = herald_server::storage::open_store(&storage).await?;
            let orgs: Vec<OrgResponse> = store
                .list_orgs()
                .await?
                .into_iter()
                .map(OrgResponse::from)
                .collect();
            print_json(&orgs)
        }
    }
}

pub(crate) async fn run_keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            org,
            scopes,
            storage,
        } => {
            let scopes = parse_scopes(scopes.split(',')).map_err(anyhow::Error::msg)?;
            let store = herald_server::storage::open_store(&storage).await?;
            let (key, token) = mint_api_key(store.as_ref(), org, scopes)
                .await
                .map_err(api_error)?;
            print_json(&ApiKeyResponse::new(key, Some(&token)))
        }
        KeysCommand::List { org, storage } => {
            let store = herald_server::storage::open_store(&storage).await?;
            store.get_org(org).await?;
            let keys: Vec<ApiKeyResponse> = store
                .list_api_keys(org)
                .await?
                .into_iter()
                .map(|key| ApiKeyResponse::new(key, None))
                .collect();
            print_json(&keys)
        }
        KeysCommand::Revoke { key_id, storage } => {
            let store = herald_server::storage::open_store(&storage).await?;
            let key = store.revoke_api_key(key_id, Timestamp::now()).await?;
            print_json(&ApiKeyResponse::new(key, None))
        }
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn api_error(error: herald_api::ApiError) -> anyhow::Error {
    match error {
        herald_api::ApiError::Validation(details) | herald_api::ApiError::InvalidInput(details) => {
            anyhow::anyhow!(
                "invalid input: {}",
                serde_json::to_string(&details).unwrap_or_default()
            )
        }
        other => anyhow::anyhow!("{other}"),
    }
}
