//! Admin commands acting on the configured database directly. Each prints one JSON value on
//! stdout, so scripts can parse it. They create organizations and keys and publish events
//! through the same functions as the admin API, and fail with the API's error envelope
//! (less the request id, which only a request has), so the two cannot disagree.

#![expect(
    clippy::print_stdout,
    reason = "the admin commands' output is JSON on stdout"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use herald_api::ApiError;
use herald_api::routes::admin::{ApiKeyResponse, OrgResponse, create_org, mint_api_key};
use herald_api::routes::events::{PublishResponse, PublishRules, prepare_event};
use herald_api::routes::portal::{PortalSessionRequest, mint_portal_session};
use herald_api::routes::recoveries::{RecoverResponse, RecoveryRules, start_recovery};
use herald_domain::catalog::SchemaEnforcement;
use herald_domain::publish::DEFAULT_MAX_EVENT_BYTES;
use herald_domain::scope::parse_scopes;
use herald_domain::{
    ApiKeyId, AuditAction, AuditId, AuditRecord, EndpointId, OrgId, Timestamp, TraceParent,
};
use herald_server::StorageArgs;
use herald_server::config::load_catalog;
use herald_store::{Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value, json};

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

/// `herald endpoints …`.
#[derive(Debug, Subcommand)]
pub(crate) enum EndpointsCommand {
    /// Deliver an endpoint's dead (and, with --include-missing, missed) events again, under
    /// their original ids; prints the recovery. A running `herald serve` puts its matches back
    /// in the queue.
    Recover {
        /// The organization.
        #[arg(long)]
        org: OrgId,
        /// The endpoint.
        #[arg(long)]
        endpoint: EndpointId,
        /// Start of the window of event creation times (RFC 3339), inclusive.
        #[arg(long)]
        since: String,
        /// End of the window (RFC 3339), exclusive; now by default.
        #[arg(long)]
        until: Option<String>,
        /// Also events the endpoint never got (published while it was inactive).
        #[arg(long)]
        include_missing: bool,
        /// Count the matches and deliver nothing.
        #[arg(long)]
        dry_run: bool,
        /// The event-type catalog, comma-separated, as `herald serve` has it.
        #[arg(long, env = "HERALD_EVENT_TYPES", hide = true)]
        event_types: Option<String>,
        /// The catalog file, as `herald serve` has it.
        #[arg(long, env = "HERALD_EVENT_CATALOG", hide = true)]
        event_catalog: Option<PathBuf>,
        /// Days events are kept, as `herald serve` has it: `since` must be within them.
        #[arg(
            long,
            env = "HERALD_EVENT_RETENTION_DAYS",
            default_value_t = 30,
            hide = true
        )]
        event_retention_days: u64,
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
        /// Deliveries of one key to one endpoint go one at a time, in publish order.
        #[arg(long)]
        ordering_key: Option<String>,
        /// A W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) the event keeps, as the
        /// API's header: every attempt joins that trace. An invalid value is refused.
        #[arg(long)]
        traceparent: Option<String>,
        /// The event-type catalog, comma-separated; when unset, the default catalog of 17 types.
        #[arg(long, env = "HERALD_EVENT_TYPES")]
        event_types: Option<String>,
        /// The catalog file, as `herald serve` has it (its schemas are checked as there).
        #[arg(long, env = "HERALD_EVENT_CATALOG")]
        event_catalog: Option<PathBuf>,
        /// `off`, `warn` or `reject`, as `herald serve` has it.
        #[arg(long, env = "HERALD_SCHEMA_ENFORCEMENT", default_value = "warn")]
        schema_enforcement: String,
        /// The cap on `data`, in bytes, as `herald serve` has it.
        #[arg(long, env = "HERALD_MAX_EVENT_BYTES", default_value_t = DEFAULT_MAX_EVENT_BYTES)]
        max_event_bytes: usize,
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
        ordering_key,
        traceparent,
        event_types,
        event_catalog,
        schema_enforcement,
        max_event_bytes,
        storage,
    } = command;
    // Checked like the API's header, but refused rather than ignored: a header may come from
    // any HTTP stack and must not stop a publish, while an operator typing a flag wants to
    // know it did nothing.
    let traceparent = traceparent
        .map(|text| {
            TraceParent::parse(&text).ok_or_else(|| {
                api_error(&ApiError::field(
                    "traceparent",
                    "must be a W3C traceparent of version 00: \
                     00-<32 lowercase hex>-<16 lowercase hex>-<2 lowercase hex>, ids not all zeros",
                ))
            })
        })
        .transpose()?;
    let catalog = load_catalog(event_catalog.as_deref(), event_types.as_deref())?;
    let schema_enforcement = SchemaEnforcement::parse(schema_enforcement.trim())
        .context("HERALD_SCHEMA_ENFORCEMENT must be off, warn or reject")?;
    // The object the admin API takes, checked by the same function: the same event is
    // accepted or refused alike, with the same error. `data` is stored as given, so
    // receivers get the bytes the operator wrote.
    let data = data.trim();
    let data_value: Value = serde_json::from_str(data).map_err(|error| {
        api_error(&ApiError::field(
            "data",
            format!("must be a JSON object (not JSON: {error})"),
        ))
    })?;
    let mut body = Map::new();
    body.insert("org_id".to_owned(), Value::String(org.to_string()));
    body.insert("type".to_owned(), Value::String(event_type));
    body.insert("data".to_owned(), data_value);
    if let Some(key) = idempotency_key {
        body.insert("idempotency_key".to_owned(), Value::String(key));
    }
    if let Some(key) = ordering_key {
        body.insert("ordering_key".to_owned(), Value::String(key));
    }
    let store = open_store(&storage).await?;
    let rules = PublishRules {
        catalog: &catalog,
        max_event_bytes,
        schema_enforcement,
        metrics: None,
        known_orgs: None,
    };
    let mut event = prepare_event(store.as_ref(), rules, body, Some(data))
        .await
        .map_err(|error| api_error(&error))?;
    event.traceparent = traceparent;
    let published = store
        .publish_events(std::slice::from_ref(&event))
        .await
        .map_err(store_error)?;
    // Running PostgreSQL nodes are told after the commit; exiting first would leave them to
    // their poll.
    store.flush_announcements().await;
    let published = published
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("publish returned no answer"))?;
    print_json(&PublishResponse::from(published))
}

pub(crate) async fn run_endpoints(command: EndpointsCommand) -> anyhow::Result<()> {
    let EndpointsCommand::Recover {
        org,
        endpoint,
        since,
        until,
        include_missing,
        dry_run,
        event_types,
        event_catalog,
        event_retention_days,
        storage,
    } = command;
    let catalog = load_catalog(event_catalog.as_deref(), event_types.as_deref())?;
    // The body the API takes, checked and started by the same function.
    let mut body = Map::new();
    body.insert("since".to_owned(), Value::String(since));
    if let Some(until) = until {
        body.insert("until".to_owned(), Value::String(until));
    }
    body.insert("include_missing".to_owned(), Value::Bool(include_missing));
    body.insert("dry_run".to_owned(), Value::Bool(dry_run));
    let rules = RecoveryRules {
        catalog: &catalog,
        event_retention: Duration::from_secs(event_retention_days.saturating_mul(86_400)),
    };
    let audit = AuditRecord {
        id: AuditId::new(),
        org_id: org,
        api_key_id: None,
        action: AuditAction::Recover,
        target_id: endpoint.to_string(),
        occurred_at: Timestamp::now(),
        request_id: None,
        reason: None,
    };
    let store = open_store(&storage).await?;
    let recovery = start_recovery(store.as_ref(), rules, org, endpoint, body, &audit)
        .await
        .map_err(|error| api_error(&error))?;
    print_json(&RecoverResponse::from(recovery))
}

pub(crate) async fn run_orgs(command: OrgsCommand) -> anyhow::Result<()> {
    match command {
        OrgsCommand::Create { name, storage } => {
            let store = open_store(&storage).await?;
            let org = create_org(store.as_ref(), &name)
                .await
                .map_err(|error| api_error(&error))?;
            print_json(&OrgResponse::from(org))
        }
        OrgsCommand::List { storage } => {
            let store = open_store(&storage).await?;
            let orgs: Vec<OrgResponse> = store
                .list_orgs()
                .await
                .map_err(store_error)?
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
            let store = open_store(&storage).await?;
            let (key, token) = mint_api_key(store.as_ref(), org, scopes)
                .await
                .map_err(|error| api_error(&error))?;
            print_json(&ApiKeyResponse::new(key, Some(&token)))
        }
        KeysCommand::List { org, storage } => {
            let store = open_store(&storage).await?;
            store.get_org(org).await.map_err(store_error)?;
            let keys: Vec<ApiKeyResponse> = store
                .list_api_keys(org)
                .await
                .map_err(store_error)?
                .into_iter()
                .map(|key| ApiKeyResponse::new(key, None))
                .collect();
            print_json(&keys)
        }
        KeysCommand::Revoke { key_id, storage } => {
            let store = open_store(&storage).await?;
            let key = store
                .revoke_api_key(key_id, Timestamp::now())
                .await
                .map_err(store_error)?;
            print_json(&ApiKeyResponse::new(key, None))
        }
    }
}

/// `herald portal …`.
#[derive(Debug, clap::Args)]
pub(crate) struct PortalArgs {
    /// The organization whose portal to open.
    #[arg(long)]
    org: OrgId,
    /// How long the link works, in seconds (60 to 86400).
    #[arg(long, default_value_t = herald_domain::portal::DEFAULT_TTL_SECONDS)]
    ttl: u64,
    /// A session that can look but not change anything.
    #[arg(long)]
    read_only: bool,
    /// Where browsers reach the server (as `herald serve` reads it).
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    public_url: Option<String>,
    /// The server's listen address, the link's base when no public URL is set.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    storage: StorageArgs,
}

pub(crate) async fn run_portal(args: PortalArgs) -> anyhow::Result<()> {
    let ttl_seconds = i64::try_from(args.ttl)
        .map_err(anyhow::Error::msg)
        .and_then(|ttl| herald_domain::portal::check_ttl(ttl).map_err(anyhow::Error::msg))
        .map_err(|error| anyhow::anyhow!("--ttl {error}"))?;
    let public_url = herald_server::config::public_url(args.public_url.as_deref(), &args.listen)?;
    let store = open_store(&args.storage).await?;
    let request = PortalSessionRequest {
        ttl_seconds,
        session: herald_domain::portal::PortalSession {
            read_only: args.read_only,
            ..Default::default()
        },
    };
    let session = mint_portal_session(store.as_ref(), args.org, request, &public_url)
        .await
        .map_err(|error| api_error(&error))?;
    print_json(&session)
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Opens the configured store; a database that cannot be reached is the API's 503
/// `UNAVAILABLE` (its cause is logged), anything else (a bad URL, a migration) says itself.
async fn open_store(storage: &StorageArgs) -> anyhow::Result<Arc<dyn Store>> {
    herald_server::storage::open_store(storage)
        .await
        .map_err(|error| {
            let unavailable = error.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<StoreError>(),
                    Some(StoreError::Unavailable(_) | StoreError::NotWritable)
                )
            });
            if unavailable {
                tracing::warn!(error = format!("{error:#}"), "storage unavailable");
                api_error(&ApiError::Unavailable)
            } else {
                error
            }
        })
}

/// A store failure as the admin API reports it.
fn store_error(error: StoreError) -> anyhow::Error {
    api_error(&error.into())
}

/// The failure as the admin API's envelope, less the request id: the command's error message
/// (printed on stderr, with a non-zero exit).
fn api_error(error: &ApiError) -> anyhow::Error {
    let (_, code, message) = error.status_code_message();
    let mut body = json!({ "code": code, "message": message });
    if let Some(details) = error.details() {
        body["details"] = json!(details);
    }
    anyhow::anyhow!("{}", json!({ "success": false, "error": body }))
}
