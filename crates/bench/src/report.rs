//! What a run reports: the machine (cores, memory, CPU model from `/proc`), the commit
//! (`git rev-parse HEAD`), and every workload's figures against its target, printed as a table
//! on stdout and written as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;

use crate::database::Backend;
use crate::workloads::{Scale, Workload};

/// The whole report of one run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    harness: &'static str,
    started_at_unix: u64,
    backend: Backend,
    /// Deliveries per workload.
    scale: usize,
    /// Whether targets are judged: only at the default scale, and with no `--herald-env`.
    judged: bool,
    /// Custom headers on every endpoint (`--endpoint-headers`).
    endpoint_headers: u8,
    /// Whether Herald exported traces to the harness's OTLP sink (`--otlp`).
    otlp: bool,
    /// Settings given to every Herald by hand (`--herald-env`); a run with any is not judged.
    herald_env: Vec<String>,
    herald_binary: PathBuf,
    machine: Machine,
    commit: Commit,
    /// One entry per workload run, in order.
    results: Vec<WorkloadResult>,
}

/// What one workload measured.
#[derive(Debug, Serialize)]
pub(crate) struct WorkloadResult {
    /// Which workload.
    pub(crate) workload: Workload,
    /// `false` when it failed or ran out of time; `error` says why.
    pub(crate) completed: bool,
    /// Why it did not complete.
    pub(crate) error: Option<String>,
    /// Wall time of the whole workload, setup included.
    pub(crate) duration_seconds: f64,
    /// The figures.
    pub(crate) metrics: Vec<Metric>,
    /// What a reader needs to interpret the figures.
    pub(crate) notes: Vec<String>,
    /// The machine's 1, 5 and 15 minute load averages when it ended: the machine is shared,
    /// so this says how noisy the figures may be.
    pub(crate) load_average: Option<[f64; 3]>,
}

/// One figure.
#[derive(Debug, Serialize)]
pub(crate) struct Metric {
    name: String,
    value: f64,
    unit: &'static str,
    target: Option<Target>,
    /// Whether the target is met; `None` when there is none or targets are not judged.
    met: Option<bool>,
}

/// A target a figure is held to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "comparison", content = "threshold", rename_all = "snake_case")]
pub(crate) enum Target {
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be at most this.
    AtMost(f64),
    /// The value must be strictly below this.
    Below(f64),
}

/// How the run ended, as an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every workload completed and every judged target was met.
    Passed,
    /// A workload failed or ran out of time.
    Incomplete,
    /// Every workload completed but a judged target was missed.
    TargetsMissed,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    memory_bytes: Option<u64>,
    cpu_model: Option<String>,
    kernel: Option<String>,
    load_average_at_start: Option<[f64; 3]>,
}

#[derive(Debug, Serialize)]
struct Commit {
    sha: Option<String>,
    /// Whether the work tree had uncommitted changes.
    dirty: Option<bool>,
}

impl Metric {
    /// A figure without a target.
    pub(crate) fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            value,
            unit,
            target: None,
            met: None,
        }
    }

    /// The same figure, held to `target`.
    pub(crate) fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The PostgreSQL backend's target: issue 5 asks it for at least half the SQLite
    /// figures, so a rate's floor is halved and a latency's ceiling doubled; ratios and memory
    /// keep theirs.
    fn for_postgres(mut self) -> Self {
        self.target = self.target.map(|target| match target {
            Target::AtLeast(floor) if self.unit.ends_with("/s") => Target::AtLeast(floor / 2.0),
            Target::AtMost(ceiling) if self.unit == "ms" => Target::AtMost(ceiling * 2.0),
            other => other,
        });
        self
    }

    fn judge(&mut self) {
        self.met = self.target.map(|target| match target {
            Target::AtLeast(threshold) => self.value >= threshold,
            Target::AtMost(threshold) => self.value <= threshold,
            Target::Below(threshold) => self.value < threshold,
        });
    }
}

impl Verdict {
    /// 0 passed, 1 incomplete, 2 a target missed.
    pub(crate) fn exit_code(self) -> ExitCode {
        match self {
            Self::Passed => ExitCode::SUCCESS,
            Self::Incomplete => ExitCode::from(1),
            Self::TargetsMissed => ExitCode::from(2),
        }
    }
}

impl Report {
    /// Starts a report: the machine and commit are read now.
    pub(crate) fn begin(
        backend: Backend,
        scale: &Scale,
        endpoint_headers: u8,
        binary: &Path,
        otlp: bool,
        herald_env: &[(String, String)],
    ) -> Self {
        Self {
            harness: "herald-bench",
            started_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            backend,
            scale: scale.events,
            // A setting changed by hand is an experiment, not the product's figure.
            judged: scale.judged() && herald_env.is_empty(),
            endpoint_headers,
            otlp,
            herald_env: herald_env
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
            herald_binary: binary.to_owned(),
            machine: Machine::read(),
            commit: Commit::read(),
            results: Vec::new(),
        }
    }

    /// Adds a workload's result, judging its figures when this run is judged.
    pub(crate) fn add(&mut self, mut result: WorkloadResult) {
        if self.backend == Backend::Postgres {
            result.metrics = result
                .metrics
                .into_iter()
                .map(Metric::for_postgres)
                .collect();
        }
        if self.judged {
            result.metrics.iter_mut().for_each(Metric::judge);
        }
        self.results.push(result);
    }

    /// How the run ended.
    pub(crate) fn verdict(&self) -> Verdict {
        let metrics = || self.results.iter().flat_map(|result| &result.metrics);
        if self.results.iter().any(|result| !result.completed) {
            Verdict::Incomplete
        } else if metrics().any(|metric| metric.met == Some(false)) {
            Verdict::TargetsMissed
        } else {
            Verdict::Passed
        }
    }

    /// Prints the machine, the commit and one row per figure on stdout.
    #[expect(clippy::print_stdout, reason = "the table is the harness's output")]
    pub(crate) fn print_table(&self) {
        print!("{}", self.table());
    }

    /// Writes the report as pretty JSON to `path`, creating its directory.
    pub(crate) fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(directory) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(directory).context("creating the report directory")?;
        }
        let json = serde_json::to_string_pretty(self).context("serializing the report")?;
        std::fs::write(path, json + "\n").context("writing the report")
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "\nmachine: {} cores, {} memory, {}",
            machine.cores,
            machine
                .memory_bytes
                .map_or("unknown".to_owned(), |bytes| format!(
                    "{:.1} GiB",
                    bytes as f64 / GIB
                )),
            machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        );
        let _ = writeln!(
            out,
            "commit:  {}{}   backend: {}   scale: {} deliveries per workload{}",
            self.commit.sha.as_deref().unwrap_or("unknown"),
            if self.commit.dirty == Some(true) {
                " (dirty)"
            } else {
                ""
            },
            self.backend,
            self.scale,
            if self.judged {
                ""
            } else {
                " (targets not judged)"
            },
        );
        if !self.herald_env.is_empty() {
            let _ = writeln!(out, "herald-env: {}", self.herald_env.join(" "));
        }
        let _ = writeln!(
            out,
            "\n{:<11} {:<32} {:>20} {:>22}  verdict",
            "workload", "figure", "value", "target"
        );
        for result in &self.results {
            if let Some(error) = &result.error {
                let _ = writeln!(out, "{:<11} INCOMPLETE: {error}", result.workload.name());
            }
            for metric in &result.metrics {
                let _ = writeln!(
                    out,
                    "{:<11} {:<32} {:>20} {:>22}  {}",
                    result.workload.name(),
                    metric.name,
                    format_value(metric.value, metric.unit),
                    metric
                        .target
                        .map_or(String::new(), |target| format_target(target, metric.unit)),
                    match metric.met {
                        Some(true) => "met",
                        Some(false) => "MISSED",
                        None => "",
                    },
                );
            }
            for note in &result.notes {
                let _ = writeln!(out, "{:<11}   note: {note}", "");
            }
            if let Some([one, five, _]) = result.load_average {
                let _ = writeln!(
                    out,
                    "{:<11}   note: took {:.1} s; load average {one:.2} (1 min), {five:.2} (5 min) at its end",
                    "", result.duration_seconds
                );
            }
        }
        out
    }
}

/// `<target dir>/herald-bench/<backend>-<unix seconds>.json`, where the target directory is
/// `CARGO_TARGET_DIR` or the workspace's `target/`.
pub(crate) fn default_output_path(backend: Backend) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_root().join("target"), PathBuf::from);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    target
        .join("herald-bench")
        .join(format!("{backend}-{now}.json"))
}

/// The machine's load averages, from `/proc/loadavg`.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let processors = cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_owned());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kilobytes = line
                    .trim_start_matches("MemTotal:")
                    .trim()
                    .trim_end_matches("kB");
                kilobytes.trim().parse::<u64>().ok().map(|kb| kb * 1024)
            });
        let cores = std::thread::available_parallelism().map_or(processors, usize::from);
        Self {
            cores,
            memory_bytes,
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|release| release.trim().to_owned()),
            load_average_at_start: load_average(),
        }
    }
}

impl Commit {
    fn read() -> Self {
        let workspace = crate::workspace_root();
        let git = |args: &[&str]| {
            Command::new("git")
                .current_dir(workspace)
                .args(args)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        Self {
            sha: git(&["rev-parse", "HEAD"]),
            dirty: git(&["status", "--porcelain"]).map(|status| !status.is_empty()),
        }
    }
}

fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.2} ms"),
        "s" => format!("{value:.2} s"),
        "ratio" | "fraction" => format!("{value:.2}"),
        "MB" => format!("{value:.1} MB"),
        "cores" => format!("{value:.2} cores"),
        _ => format!("{} {unit}", thousands(value)),
    }
}

fn format_target(target: Target, unit: &str) -> String {
    let (sign, threshold) = match target {
        Target::AtLeast(threshold) => (">=", threshold),
        Target::AtMost(threshold) => ("<=", threshold),
        Target::Below(threshold) => ("<", threshold),
    };
    format!("{sign} {}", format_value(threshold, unit))
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if value < 0.0 {
        grouped.insert(0, '-');
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        for (value, expected) in [
            (0.0, "0"),
            (999.4, "999"),
            (1234.4, "1,234"),
            (20000.0, "20,000"),
        ] {
            assert_eq!(thousands(value), expected, "{value}");
        }
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn postgres_targets_are_half_the_speed_and_the_same_ratios() {
        let rate = Metric::new("rate", 1.0, "events/s").target(Target::AtLeast(3000.0));
        let latency = Metric::new("p99", 1.0, "ms").target(Target::AtMost(10.0));
        let ratio = Metric::new("ratio", 1.0, "×").target(Target::AtLeast(0.8));
        let rss = Metric::new("rss", 1.0, "MB").target(Target::Below(100.0));
        let relaxed: Vec<Option<Target>> = [rate, latency, ratio, rss]
            .into_iter()
            .map(|metric| metric.for_postgres().target)
            .collect();
        assert_eq!(
            relaxed,
            vec![
                Some(Target::AtLeast(1500.0)),
                Some(Target::AtMost(20.0)),
                Some(Target::AtLeast(0.8)),
                Some(Target::Below(100.0)),
            ]
        );
    }

    #[test]
    fn a_metric_is_judged_against_its_target() {
        let mut fast = Metric::new("rate", 3000.0, "events/s").target(Target::AtLeast(3000.0));
        let mut heavy = Metric::new("rss", 100.0, "MB").target(Target::Below(100.0));
        fast.judge();
        heavy.judge();
        assert_eq!((fast.met, heavy.met), (Some(true), Some(false)));
    }
}
