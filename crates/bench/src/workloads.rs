//! The workloads, what they share, and how large they are. Each one starts its own Herald on a
//! fresh database (through [`Session`]), bounds its publishing and its waiting by a deadline,
//! and reports its figures, Herald's peak resident memory among them.

mod backlog;
mod catalog;
mod ceiling;
mod delivery;
mod history;
mod ingest;
mod nodes;
mod noisy;
mod ordered;
mod probe;
mod provision;
mod publish;
mod recover;
mod tenants;

pub(crate) use ordered::round_trip_client;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tempfile::TempDir;

use crate::api::Org;
use crate::database::Backend;
use crate::herald::HeraldSettings;
use crate::receiver::{Behaviour, Pki, Receiver, Sample};
use crate::report::{Metric, Target, WorkloadResult, load_average};
use crate::session::{Launch, Session, Usage};

use self::publish::{Publishing, publish};

/// Deliveries per workload at the default scale, where targets are judged.
const FULL_SCALE: usize = 20_000;
/// Deliveries per workload of `--smoke`.
const SMOKE_SCALE: usize = 300;
/// The smallest `--events` that still gives every workload something to measure.
const MIN_SCALE: usize = 100;
/// The resident-memory target, in MB (10^6 bytes).
const RSS_TARGET_MB: f64 = 100.0;

/// A workload, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// How fast events are accepted: single publishes from 32 clients, then batches of 100.
    Ingest,
    /// Deliveries to one endpoint.
    Throughput,
    /// Deliveries to ten endpoints.
    Fanout,
    /// Time from publish to receipt at a steady 50 events a second.
    Latency,
    /// Healthy endpoints beside hanging ones, against the same without the hanging ones.
    Noisy,
    /// The harness's own client against the same receiver: the bound on throughput.
    Ceiling,
    /// Dead deliveries recovered to a healthy receiver, against throughput's rate, with the
    /// API's latency during the recovery against idle.
    Recover,
    /// Deliveries with ordering keys (100 keys, then one), against throughput's rate, with
    /// every key's receipts checked against publish order.
    Ordered,
    /// The event catalog's costs: fan-out to 50 filtered endpoints against unfiltered, and
    /// single publishes with schema enforcement `reject` against `off`.
    Catalog,
    /// `latency` after 100,000 deliveries through the same Herald and database.
    Churned,
    /// Single publishes from 32 clients fanned out to ten endpoints: receipt times while
    /// publishing.
    Fanlag,
    /// `fanlag` on three PostgreSQL nodes, published to one, delivered by the other two.
    FanlagNodes,
    /// A backlog of due deliveries across thousands of endpoints, drained: the rate per
    /// tenth of the drain, the API's latency meanwhile, the `/metrics` scrape's time.
    Backlog,
    /// `backlog` drained by a delivery node while an API node answers the API (PostgreSQL
    /// only): what node roles do for the API's tail.
    BacklogRoles,
    /// Thousands of organizations with three endpoints each, a steady publish rate spread
    /// over them, against the same rate to one organization.
    Tenants,
    /// `throughput` and the deliveries feed on a database holding millions of attempt
    /// records, against an empty one.
    History,
    /// One, two and three `herald serve` nodes on one PostgreSQL database: the rate, the
    /// duplicates, and the rate per CPU-second of Herald and of PostgreSQL.
    Nodes,
}

/// How many events each workload handles, and for how long it may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    /// Deliveries per workload (20,000 by default).
    pub(crate) events: usize,
}

/// Runs workloads; holds what they share: the receivers' CA and what the throughput workload
/// leaves for the ceiling, recover and ordered workloads.
pub(crate) struct Bench {
    launch: Launch,
    scale: Scale,
    pki: Pki,
    throughput: Option<ThroughputReference>,
    _ca_directory: TempDir,
}

/// Herald's throughput to one endpoint and a request it sent there.
struct ThroughputReference {
    deliveries_per_second: f64,
    sample: Sample,
}

/// What a workload measured. `incomplete` says why it stopped short, if it did; the figures
/// are then the partial ones.
#[derive(Debug, Default)]
struct Figures {
    metrics: Vec<Metric>,
    notes: Vec<String>,
    incomplete: Option<String>,
}

impl Workload {
    const ALL: [Self; 17] = [
        Self::Ingest,
        Self::Throughput,
        Self::Fanout,
        Self::Latency,
        Self::Noisy,
        Self::Ceiling,
        Self::Recover,
        Self::Ordered,
        Self::Catalog,
        Self::Churned,
        Self::Fanlag,
        Self::FanlagNodes,
        Self::Backlog,
        Self::BacklogRoles,
        Self::Tenants,
        Self::History,
        Self::Nodes,
    ];

    /// The scale workloads (issue 19), which `scale` names together.
    const SCALE: [Self; 5] = [
        Self::Backlog,
        Self::BacklogRoles,
        Self::Tenants,
        Self::History,
        Self::Nodes,
    ];

    /// Parses `all` or a comma-separated list of names, in the canonical order. The ceiling,
    /// recover and ordered workloads compare with Herald's throughput, so asking for any of
    /// them adds `throughput`.
    pub(crate) fn parse_list(text: &str) -> anyhow::Result<Vec<Self>> {
        let mut workloads = Vec::new();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if name == "all" {
                workloads.extend(Self::ALL);
                continue;
            }
            if name == "scale" {
                workloads.extend(Self::SCALE);
                continue;
            }
            match Self::ALL
                .into_iter()
                .find(|workload| workload.name() == name)
            {
                Some(workload) => workloads.push(workload),
                None => bail!(
                    "unknown workload {name:?}; choose from all, ingest, throughput, fanout, \
                     latency, noisy, ceiling, recover, ordered, catalog, churned, fanlag, \
                     fanlag-nodes, scale, backlog, backlog-roles, tenants, history, nodes"
                ),
            }
        }
        if [Self::Ceiling, Self::Recover, Self::Ordered]
            .iter()
            .any(|workload| workloads.contains(workload))
        {
            workloads.push(Self::Throughput);
        }
        workloads.sort_unstable();
        workloads.dedup();
        if workloads.is_empty() {
            bail!("no workload named");
        }
        Ok(workloads)
    }

    /// The workload's name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Throughput => "throughput",
            Self::Fanout => "fanout",
            Self::Latency => "latency",
            Self::Noisy => "noisy",
            Self::Ceiling => "ceiling",
            Self::Recover => "recover",
            Self::Ordered => "ordered",
            Self::Catalog => "catalog",
            Self::Churned => "churned",
            Self::Fanlag => "fanlag",
            Self::FanlagNodes => "fanlag-nodes",
            Self::Backlog => "backlog",
            Self::BacklogRoles => "backlog-roles",
            Self::Tenants => "tenants",
            Self::History => "history",
            Self::Nodes => "nodes",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Scale {
    /// The default scale; targets are judged.
    pub(crate) fn full() -> Self {
        Self { events: FULL_SCALE }
    }

    /// A few hundred deliveries per workload, for CI.
    pub(crate) fn smoke() -> Self {
        Self {
            events: SMOKE_SCALE,
        }
    }

    /// `events` deliveries per workload.
    pub(crate) fn custom(events: usize) -> anyhow::Result<Self> {
        if events < MIN_SCALE {
            bail!("--events must be at least {MIN_SCALE}");
        }
        Ok(Self { events })
    }

    /// Targets are set for the default scale only.
    pub(crate) fn judged(&self) -> bool {
        self.events == FULL_SCALE
    }

    /// Events of the latency workload: 500 at the default scale, at 50 a second.
    fn latency_events(&self) -> usize {
        (self.events / 40).max(20)
    }

    /// Events of the noisy workload: 5,000 at the default scale, each to 10 healthy endpoints.
    fn noisy_events(&self) -> usize {
        (self.events / 4).max(10)
    }

    /// Events of the fanlag workload: 5,000 at the default scale, each to 10 endpoints.
    fn fanlag_events(&self) -> usize {
        (self.events / 4).max(10)
    }

    /// Deliveries the churned workload pushes through before it measures latency: 100,000 at
    /// the default scale.
    fn churn_deliveries(&self) -> usize {
        self.events.saturating_mul(5)
    }

    /// Ordinary API requests the recover workload times while Herald is idle, before the
    /// recovery: 1,000 at the default scale (5 s at 200 a second), at least 50; about as many
    /// as a recovery of 20,000 lasts for, so both p99s rank among similar counts.
    fn idle_requests(&self) -> usize {
        (self.events / 20).max(50)
    }

    /// Events of the ordered workload's one-key half: 1,000 at the default scale, at least 50.
    fn single_key_events(&self) -> usize {
        (self.events / 20).max(50)
    }

    /// A scale workload's size: `full` at the default scale, in proportion to `--events`
    /// otherwise, and `smoke` (also the least) for `--smoke`.
    fn grown(&self, full: usize, smoke: usize) -> usize {
        if self.events == SMOKE_SCALE {
            return smoke;
        }
        (full as u128 * self.events as u128 / FULL_SCALE as u128)
            .try_into()
            .unwrap_or(usize::MAX)
            .max(smoke)
    }

    /// How long a phase handling `deliveries` may take before it is cut short: 30 s plus 4 ms
    /// a delivery, generous next to every target, so only a stall or a collapse reaches it.
    fn deadline(&self, deliveries: usize) -> Instant {
        let per_delivery = Duration::from_millis(4) * u32::try_from(deliveries).unwrap_or(u32::MAX);
        Instant::now() + Duration::from_secs(30) + per_delivery
    }
}

impl Bench {
    /// Prepares the receivers' CA; the workloads start Herald themselves.
    pub(crate) async fn new(
        backend: Backend,
        binary: PathBuf,
        scale: Scale,
        endpoint_headers: u8,
        otlp_endpoint: Option<String>,
        herald_env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let pki = Pki::generate().await?;
        let ca_directory = tempfile::Builder::new()
            .prefix("herald-bench-ca-")
            .tempdir()
            .context("creating a temporary directory")?;
        let ca_path = ca_directory.path().join("ca.pem");
        std::fs::write(&ca_path, &pki.root_pem).context("writing the CA certificate")?;
        Ok(Self {
            launch: Launch {
                binary,
                backend,
                ca_path,
                endpoint_headers,
                otlp_endpoint,
                herald_env,
            },
            scale,
            pki,
            throughput: None,
            _ca_directory: ca_directory,
        })
    }

    /// Runs one workload; a failure is reported in the result, not returned.
    pub(crate) async fn run(&mut self, workload: Workload) -> WorkloadResult {
        let started = Instant::now();
        let figures = match workload {
            Workload::Ingest => ingest::run(self).await,
            Workload::Throughput => delivery::throughput(self).await,
            Workload::Fanout => delivery::fanout(self).await,
            Workload::Latency => delivery::latency(self).await,
            Workload::Noisy => noisy::run(self).await,
            Workload::Ceiling => ceiling::run(self).await,
            Workload::Recover => recover::run(self).await,
            Workload::Ordered => ordered::run(self).await,
            Workload::Catalog => catalog::run(self).await,
            Workload::Churned => delivery::churned(self).await,
            Workload::Fanlag => delivery::fanlag(self).await,
            Workload::FanlagNodes => delivery::fanlag_nodes(self).await,
            Workload::Backlog => backlog::run(self, backlog::Drain::OneNode).await,
            Workload::BacklogRoles => backlog::run(self, backlog::Drain::Roles).await,
            Workload::Tenants => tenants::run(self).await,
            Workload::History => history::run(self).await,
            Workload::Nodes => nodes::run(self).await,
        };
        let (figures, error) = match figures {
            Ok(figures) => {
                let incomplete = figures.incomplete.clone();
                (figures, incomplete)
            }
            Err(error) => (Figures::default(), Some(format!("{error:#}"))),
        };
        if let Some(error) = &error {
            eprintln!("herald-bench: {workload} did not complete: {error}");
        }
        WorkloadResult {
            workload,
            completed: error.is_none(),
            error,
            duration_seconds: started.elapsed().as_secs_f64(),
            metrics: figures.metrics,
            notes: figures.notes,
            load_average: load_average(),
        }
    }

    /// A receiver with the loopback certificate.
    fn receiver(&self, behaviour: Behaviour) -> anyhow::Result<Receiver> {
        Receiver::spawn(self.pki.tls.clone(), behaviour)
    }

    /// A fresh Herald with Herald's default settings and one organization, named `name`,
    /// whose one endpoint is a healthy receiver.
    async fn one_endpoint(&self, name: &str) -> anyhow::Result<OneEndpoint> {
        let receiver = self.receiver(Behaviour::Answer)?;
        let session = Session::start(&self.launch, HeraldSettings::default()).await?;
        let org = session.api.create_org(name).await?;
        session.api.create_endpoint(&org, &receiver.url()).await?;
        Ok(OneEndpoint {
            receiver,
            session,
            org,
        })
    }
}

/// A Herald whose organization has one endpoint, and that endpoint's receiver.
struct OneEndpoint {
    receiver: Receiver,
    session: Session,
    org: Org,
}

impl OneEndpoint {
    /// Waits until `expected` distinct deliveries arrived; if `deadline` passes first, says so
    /// in `figures`.
    async fn await_deliveries(
        &mut self,
        expected: usize,
        deadline: Instant,
        figures: &mut Figures,
    ) -> anyhow::Result<()> {
        let receiver = &self.receiver;
        let arrived = self
            .session
            .wait_until(deadline, || receiver.distinct() >= expected)
            .await?;
        if !arrived {
            figures.stopped_short(format!(
                "only {} of {expected} deliveries arrived in time",
                receiver.distinct()
            ));
        }
        Ok(())
    }
}

impl Figures {
    fn metric(&mut self, metric: Metric) {
        self.metrics.push(metric);
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records that a phase stopped short (the first reason wins).
    fn stopped_short(&mut self, reason: impl Into<String>) {
        self.incomplete.get_or_insert_with(|| reason.into());
    }

    /// What Herald used: its peak resident memory, held to the target, and its CPU time
    /// with the average number of cores it kept busy. `label` names the Herald when a
    /// workload runs more than one.
    fn usage(&mut self, label: &str, usage: &Usage) {
        let name = |what: &str| format!("{label}herald {what}");
        match usage.peak_rss_bytes {
            Some(bytes) => self.metric(
                Metric::new(name("peak RSS"), bytes as f64 / 1e6, "MB")
                    .target(Target::Below(RSS_TARGET_MB)),
            ),
            None => self.note(format!("{}: /proc gave no VmHWM", name("peak RSS"))),
        }
        if let Some(seconds) = usage.cpu_seconds {
            self.metric(Metric::new(name("CPU time"), seconds, "s"));
            self.metric(Metric::new(
                name("cores busy (average)"),
                seconds / usage.wall_seconds,
                "ratio",
            ));
        }
    }
}

/// Distinct deliveries received across `receivers`.
fn distinct(receivers: &[Receiver]) -> usize {
    receivers.iter().map(Receiver::distinct).sum()
}

/// A note on how the receivers were reached, so HTTP/1.1 and HTTP/2 runs are not compared
/// unawares.
fn protocol_note(receivers: &[Receiver]) -> String {
    let total: usize = receivers.iter().map(Receiver::total).sum();
    let http2: usize = receivers.iter().map(Receiver::http2).sum();
    format!("receivers got {total} requests, {http2} of them over HTTP/2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[Workload]) {
        let parsed = Workload::parse_list(text).expect("a valid list");
        assert_eq!(parsed, expected, "workloads of {text:?}");
    }

    #[test]
    fn workload_lists_come_in_canonical_order_and_ceiling_brings_throughput() {
        use Workload::*;
        check("all", &Workload::ALL);
        check("noisy, ingest", &[Ingest, Noisy]);
        check("ceiling", &[Throughput, Ceiling]);
        check("recover", &[Throughput, Recover]);
        check("recover,ceiling", &[Throughput, Ceiling, Recover]);
        check("ordered", &[Throughput, Ordered]);
        check("catalog,fanout", &[Fanout, Catalog]);
        check("latency,all,latency", &Workload::ALL);
        check("nodes, scale", &Workload::SCALE);
        check("history,ingest", &[Ingest, History]);
        check("fanlag-nodes, fanlag", &[Fanlag, FanlagNodes]);
    }

    #[test]
    fn unknown_workloads_and_empty_lists_are_refused() {
        assert!(Workload::parse_list("fast").is_err());
        assert!(Workload::parse_list(" , ").is_err());
    }
}
