//! CPU time read from `/proc`: of PostgreSQL's backends, of the harness itself, and of the
//! whole machine, so that a phase's CPU can be split between who used it.

use crate::herald::stat_cpu_seconds;

/// CPU seconds, user and system, of every PostgreSQL backend serving `database` now (those
/// whose process title names it). A backend that exited meanwhile takes its time with it:
/// Herald's pools keep theirs open for the run.
pub(crate) fn postgres_seconds(database: &str) -> f64 {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    processes
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let title = std::fs::read(entry.path().join("cmdline")).ok()?;
            let title = String::from_utf8_lossy(&title);
            if !title.starts_with("postgres: ") || !title.contains(database) {
                return None;
            }
            stat_cpu_seconds(&std::fs::read_to_string(entry.path().join("stat")).ok()?)
        })
        .sum()
}

/// CPU seconds, user and system, of the harness's own process (its receivers, publishers
/// and probers).
pub(crate) fn harness_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(stat_cpu_seconds)
        .unwrap_or(0.0)
}

/// The machine's CPU time so far, from the first line of `/proc/stat`: busy (everything but
/// idle and I/O wait) and total, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    /// Reads them now; zero where `/proc/stat` cannot be read.
    pub(crate) fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Self::parse(&text).unwrap_or(Self { busy: 0, total: 0 })
    }

    fn parse(text: &str) -> Option<Self> {
        let line = text.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user already).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
        Some(Self {
            busy: total - idle,
            total,
        })
    }

    /// The share of the machine's CPU that was busy between `earlier` and this reading.
    pub(crate) fn busy_since(self, earlier: Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        (total > 0).then(|| (self.busy - earlier.busy) as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::MachineTicks;

    #[test]
    fn the_machines_busy_share_leaves_out_idle_and_io_wait() {
        let before = MachineTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
            .expect("a /proc/stat line");
        let after =
            MachineTicks::parse("cpu  250 0 100 850 50 0 0 0 0 0\n").expect("a /proc/stat line");
        // 200 busy ticks of 250.
        assert_eq!(after.busy_since(before), Some(0.8));
        assert_eq!(before.busy_since(before), None);
    }
}
