//! Resource figures of the engine's processes and of the stack, read from /proc: resident memory
//! and CPU time (USER_HZ ticks, 100 per second on Linux whatever the kernel's HZ).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

const TICKS_PER_SECOND: f64 = 100.0;

/// A component: one process, or a process and its children (the PostgreSQL backends).
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub pid: u32,
    pub with_children: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub peak_rss_mb: f64,
    /// Average over the window, in % of one core.
    pub avg_cpu_pct: f64,
    /// Highest over any sampling interval, in % of one core.
    pub peak_cpu_pct: f64,
}

fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Proportional set size (shared pages split between their users), so PostgreSQL's backends do
/// not each count the whole shared buffer pool; resident size where PSS is not readable.
fn rss_kb(pid: u32) -> u64 {
    let field = |file: &str, key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
    };
    field("smaps_rollup", "Pss:")
        .or_else(|| field("status", "VmRSS:"))
        .unwrap_or(0)
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| stat(*p).is_some_and(|(ppid, _)| ppid == pid))
        .collect()
}

/// (RSS kB, CPU ticks) of a component now.
fn sample(c: &Component) -> (u64, u64) {
    let mut pids = vec![c.pid];
    if c.with_children {
        pids.extend(children_of(c.pid));
    }
    pids.iter().fold((0, 0), |(rss, cpu), p| {
        (rss + rss_kb(*p), cpu + stat(*p).map_or(0, |(_, t)| t))
    })
}

/// The pid on the first line of a pid file (PostgreSQL's `postmaster.pid`, the stack's).
pub fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The stack's processes, from the pid files `scripts/stack.sh` writes under `<repo>/.dev`.
pub fn stack_components(repo: &Path) -> Vec<Component> {
    let mut out = Vec::new();
    let dev = repo.join(".dev");
    for (name, file, children) in [
        ("postgres", dev.join("pg/data/postmaster.pid"), true),
        ("temporal", dev.join("run/temporal.pid"), false),
        ("tansu", dev.join("run/kafka.pid"), false),
    ] {
        if let Some(pid) = pid_in(&file) {
            out.push(Component {
                name: name.into(),
                pid,
                with_children: children,
            });
        }
    }
    out
}

/// CPU time a component used so far, in seconds.
pub fn cpu_seconds(c: &Component) -> f64 {
    sample(c).1 as f64 / TICKS_PER_SECOND
}

/// Samples the components every `every` until `stop` turns true; returns the usage of each.
pub async fn watch_usage(
    components: Vec<Component>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> BTreeMap<String, Usage> {
    let started = Instant::now();
    let first: Vec<(u64, u64)> = components.iter().map(sample).collect();
    let mut last = first.clone();
    let mut last_at = started;
    let mut out: BTreeMap<String, Usage> = components
        .iter()
        .zip(&first)
        .map(|(c, (rss, _))| {
            (
                c.name.clone(),
                Usage {
                    peak_rss_mb: *rss as f64 / 1024.0,
                    ..Usage::default()
                },
            )
        })
        .collect();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        let now = Instant::now();
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        for (i, c) in components.iter().enumerate() {
            let (rss, cpu) = sample(c);
            let u = out.entry(c.name.clone()).or_default();
            u.peak_rss_mb = u.peak_rss_mb.max(rss as f64 / 1024.0);
            let pct = cpu.saturating_sub(last[i].1) as f64 / TICKS_PER_SECOND / dt * 100.0;
            u.peak_cpu_pct = u.peak_cpu_pct.max(pct);
            let total = now.duration_since(started).as_secs_f64().max(1e-3);
            u.avg_cpu_pct =
                cpu.saturating_sub(first[i].1) as f64 / TICKS_PER_SECOND / total * 100.0;
            last[i] = (rss, cpu);
        }
        last_at = now;
        if *stop.borrow() {
            return out;
        }
    }
}

/// Cores and model of this machine, and its load average (the machine is shared).
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    serde_json::json!({ "cores": cores, "model": model, "loadavg": load })
}
