//! `catalog`: what the event catalog's features cost when they are used (issue 17), each
//! measured against the same run without them, on a fresh Herald each:
//!
//! - fan-out to 50 endpoints, first without filters, then with a payload filter on every
//!   endpoint, half of which match every event: the filtered delivery rate over the
//!   unfiltered one (aim ≥ 0.8; filters are evaluated at fan-out, inside the publish);
//! - single publishes from 32 clients under a catalog file whose schema covers the event, with
//!   `HERALD_SCHEMA_ENFORCEMENT=off`, then `reject`: the accepted rate with `reject` over the
//!   one with `off` (aim ≥ 0.8; every event is valid, so each is checked and accepted).

use anyhow::Context as _;
use serde_json::json;
use tempfile::TempDir;

use crate::api::EVENT_TYPE;
use crate::herald::HeraldSettings;
use crate::receiver::Behaviour;
use crate::report::{Metric, Target};
use crate::session::Session;
use crate::stats::rate;

use super::delivery::{Bulk, Publishers, bulk};
use super::{Bench, Figures, publish};

/// Endpoints of the fan-out comparison.
const ENDPOINTS: usize = 50;

/// Concurrent publishing clients of the enforcement comparison, as in `ingest`.
const CLIENTS: usize = 32;

/// Runs the workload.
pub(super) async fn run(bench: &Bench) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    let events = (bench.scale.events / ENDPOINTS).max(10);
    let mut rates = Vec::new();
    for (name, filtered) in [
        ("bench-catalog-unfiltered", false),
        ("bench-catalog-filtered", true),
    ] {
        let run = bulk(
            bench,
            Bulk {
                name,
                healthy: ENDPOINTS,
                hanging: 0,
                events,
                settings: HeraldSettings::default(),
                filtered,
                publishers: Publishers::BATCHED,
                other_nodes: 0,
            },
        )
        .await?;
        if run.delivered < run.expected {
            figures.stopped_short(format!(
                "{name}: only {} of {} deliveries arrived in time",
                run.delivered, run.expected
            ));
        }
        let label = if filtered { "filtered" } else { "unfiltered" };
        figures.metric(Metric::new(
            format!("fan-out to {ENDPOINTS}, {label}: delivery rate"),
            run.deliveries_per_second,
            "deliveries/s",
        ));
        rates.push(run.deliveries_per_second);
    }
    if let [unfiltered, filtered] = rates[..]
        && unfiltered > 0.0
    {
        figures.metric(
            Metric::new(
                "filtered / unfiltered delivery rate",
                filtered / unfiltered,
                "ratio",
            )
            .target(Target::AtLeast(0.8)),
        );
    }

    let catalog = CatalogFile::write()?;
    let publishes = (bench.scale.events / 4).max(50);
    let mut accepted = Vec::new();
    for enforcement in ["off", "reject"] {
        let settings = HeraldSettings {
            event_catalog: Some(catalog.path()),
            schema_enforcement: Some(enforcement),
            ..HeraldSettings::default()
        };
        let receiver = bench.receiver(Behaviour::Answer)?;
        let session = Session::start(&bench.launch, settings).await?;
        let org = session.api.create_org("bench-catalog-schema").await?;
        session.api.create_endpoint(&org, &receiver.url()).await?;
        let deadline = bench.scale.deadline(publishes);
        let single = publish(&session.api, &org, 0..publishes, CLIENTS, 1, deadline).await?;
        let accepted_rate = rate(publishes, single.finished - single.started);
        session.finish().await?;
        figures.metric(Metric::new(
            format!("single publishes, enforcement {enforcement}"),
            accepted_rate,
            "events/s",
        ));
        accepted.push(accepted_rate);
    }
    if let [off, reject] = accepted[..]
        && off > 0.0
    {
        figures.metric(
            Metric::new("reject / off publish rate", reject / off, "ratio")
                .target(Target::AtLeast(0.8)),
        );
    }
    figures.note(format!(
        "{events} events to {ENDPOINTS} endpoints in batches, without then with filters (half \
         matching); {publishes} single publishes from {CLIENTS} clients with a schema, \
         enforcement off then reject"
    ));
    Ok(figures)
}

/// A catalog file of the bench's one event type, with a schema its events satisfy.
struct CatalogFile {
    directory: TempDir,
}

impl CatalogFile {
    fn write() -> anyhow::Result<Self> {
        let directory = tempfile::Builder::new()
            .prefix("herald-bench-catalog-")
            .tempdir()
            .context("creating a temporary directory")?;
        // The shape of `api.rs`'s events.
        let catalog = json!([{
            "name": EVENT_TYPE,
            "description": "The wallet balance fell below its low-balance threshold.",
            "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["wallet_id", "balance", "threshold", "currency", "n"],
                "properties": {
                    "wallet_id": { "type": "string", "pattern": "^wal_[0-9]{12}$" },
                    "balance": { "type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$" },
                    "threshold": { "type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$" },
                    "currency": { "enum": ["EUR", "USD", "GBP"] },
                    "n": { "type": "integer", "minimum": 0 }
                },
                "additionalProperties": false
            }
        }]);
        std::fs::write(
            directory.path().join("catalog.json"),
            serde_json::to_vec_pretty(&catalog).context("writing the catalog")?,
        )
        .context("writing the catalog file")?;
        Ok(Self { directory })
    }

    fn path(&self) -> std::path::PathBuf {
        self.directory.path().join("catalog.json")
    }
}
