//! CPU time read from `/proc`: of PostgreSQL's backends, of the harness itself, and of the
//! whole machine, so that a phase's CPU can be split between who used it.

use std::collections::HashMap;

/// `USER_HZ`, the unit of `/proc/<pid>/stat` times: 100 on every Linux the harness targets.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The CPU time, user and system, in seconds, of a process's `/proc/<pid>/stat` line
/// (`utime` and `stime`).
pub(crate) fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    seconds_at(stat, 11)
}

/// The CPU time of the PostgreSQL backends serving one database, backend by backend, and of
/// the server's children that have exited, at one moment.
///
/// Backends come and go during a phase (Herald's PostgreSQL upkeep opens a connection of its
/// own every few thousand settled deliveries, autovacuum workers start and end), so a phase's
/// CPU is [`PostgresCpu::since`]: the growth of each backend alive at the end, plus what the
/// children that exited meanwhile used (the postmaster's `cutime` and `cstime`, which take a
/// child's whole life when it is reaped), less what those had used before the phase.
/// Children of other databases that exit during the phase are counted too: on the
/// benchmark's machine nothing else uses the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct PostgresCpu {
    backends: HashMap<u32, f64>,
    exited_children: f64,
}

impl PostgresCpu {
    /// Reads the backends serving `database` (those whose process title names it) now.
    pub(crate) fn read(database: &str) -> Self {
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return Self::default();
        };
        let mut backends = HashMap::new();
        let mut postmaster = None;
        for entry in processes.filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(title) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let title = String::from_utf8_lossy(&title);
            if !title.starts_with("postgres: ") || !title.contains(database) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(seconds) = stat_cpu_seconds(&stat) {
                backends.insert(pid, seconds);
            }
            postmaster = postmaster.or_else(|| parent_pid(&stat));
        }
        let exited_children = postmaster
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|stat| children_cpu_seconds(&stat))
            .unwrap_or(0.0);
        Self {
            backends,
            exited_children,
        }
    }

    /// CPU seconds the database's backends used between `earlier` and this reading.
    pub(crate) fn since(&self, earlier: &Self) -> f64 {
        let alive: f64 = self
            .backends
            .iter()
            .map(|(pid, seconds)| seconds - earlier.backends.get(pid).unwrap_or(&0.0))
            .sum();
        let gone_before: f64 = earlier
            .backends
            .iter()
            .filter(|(pid, _)| !self.backends.contains_key(pid))
            .map(|(_, seconds)| seconds)
            .sum();
        alive + (self.exited_children - earlier.exited_children) - gone_before
    }
}

/// The parent's process id, from a `/proc/<pid>/stat` line.
fn parent_pid(stat: &str) -> Option<u32> {
    after_name(stat)?.nth(1)?.parse().ok()
}

/// The CPU time, user and system, of a process's reaped children (`cutime`, `cstime`), in
/// seconds.
fn children_cpu_seconds(stat: &str) -> Option<f64> {
    seconds_at(stat, 13)
}

/// The fields of a `/proc/<pid>/stat` line after the command name, which is in parentheses
/// and may hold spaces: the state first, then the parent's id, … `utime` and `stime` at 11
/// and 12, `cutime` and `cstime` at 13 and 14 (counting from 0).
fn after_name(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    let (_, fields) = stat.rsplit_once(')')?;
    Some(fields.split_whitespace())
}

/// The two tick counts at `index` and the one after it (after the command name), added, in
/// seconds.
fn seconds_at(stat: &str, index: usize) -> Option<f64> {
    let mut fields = after_name(stat)?.skip(index);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds, user and system, of the harness's own process: its receivers, publishers,
/// probers and these readings of `/proc`.
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
    /// Reads them now; `None` where `/proc/stat` cannot be read.
    pub(crate) fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(text: &str) -> Option<Self> {
        let line = text.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal; guest and guest_nice, which follow,
        // are inside user and nice already. Steal (another VM's time on this core) counts as
        // busy: the core was not free to run anything here.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
        Some(Self {
            busy: total.checked_sub(idle)?,
            total,
        })
    }

    /// The share of the machine's CPU that was busy between `earlier` and this reading.
    pub(crate) fn busy_since(self, earlier: Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::{MachineTicks, children_cpu_seconds, parent_pid, stat_cpu_seconds};

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

    #[test]
    fn a_process_stat_line_gives_its_parent_and_its_reaped_childrens_time() {
        // pid (comm with spaces) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime …
        let stat = "812 (postgres: a b) S 77 812 812 0 -1 4194560 10 20 0 0 5 6 300 45 20 0";
        assert_eq!(parent_pid(stat), Some(77));
        assert_eq!(children_cpu_seconds(stat), Some(3.45));
        assert_eq!(stat_cpu_seconds(stat), Some(0.11));
    }
}
