//! The report: JSON for machines, a Markdown table for people, and the
//! targets Cairn is held to, computed from the runs.

use serde::{Deserialize, Serialize};

/// One measured point (or, for `failover`, one series of failovers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// `cairn`, `etcd` or `redis`.
    pub system: String,
    /// `put`, `get_linearizable`, `get_stale`, `lock`, `artifact_64k`,
    /// `artifact_1m` or `failover`.
    pub workload: String,
    /// `put` or `get`, for the artifact workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Concurrent closed-loop clients.
    pub concurrency: usize,
    /// Length of the measured window, in seconds.
    pub duration_s: f64,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Successful operations per second.
    pub ops_per_s: f64,
    /// Latency quantiles of successful operations (for `failover`: of the
    /// failover times).
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub p999_ms: f64,
    /// Payload throughput, for the artifact workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    /// CPU seconds all server processes used during the point.
    pub cpu_s: f64,
    /// CPU seconds per node.
    pub cpu_s_per_node: Vec<f64>,
    /// Peak resident memory per node during the point, in MiB.
    pub peak_rss_mib: Vec<f64>,
    /// Terms that passed during the point: elections, none expected.
    pub elections: u64,
    /// Each failover's time, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_ms: Option<Vec<f64>>,
}

/// Facts about one system under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Its name.
    pub system: String,
    /// What its binary says of its version.
    pub version: String,
    /// Resident memory per node once started and idle, in MiB.
    pub idle_rss_mib: Vec<f64>,
    /// Resident memory per node idle again after all its workloads, in MiB.
    pub idle_rss_after_mib: Vec<f64>,
}

/// One target of the performance work, and whether this run meets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What is compared.
    pub name: String,
    /// The bar.
    pub want: String,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measured in this run.
    pub met: Option<bool>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Start time, RFC 3339.
    pub started: String,
    /// CPU model, cores, memory and kernel of the machine.
    pub machine: String,
    /// Whether this was a `--quick` run.
    pub quick: bool,
    /// The systems measured.
    pub systems: Vec<SystemInfo>,
    /// Every point.
    pub runs: Vec<Run>,
    /// The targets, judged.
    pub targets: Vec<Target>,
}

impl Report {
    fn find(&self, system: &str, workload: &str, concurrency: usize) -> Option<&Run> {
        self.runs.iter().find(|r| {
            r.system == system
                && r.workload == workload
                && r.op.is_none()
                && r.concurrency == concurrency
        })
    }

    /// Judges the targets from the runs (at 64 clients, as they are set).
    pub fn judge(&mut self) {
        let mut targets = Vec::new();
        let ratio = |w: &str, want: f64, name: &str, targets: &mut Vec<Target>| {
            let (c, e) = (self.find("cairn", w, 64), self.find("etcd", w, 64));
            targets.push(match (c, e) {
                (Some(c), Some(e)) if e.ops_per_s > 0.0 => {
                    let r = c.ops_per_s / e.ops_per_s;
                    Target {
                        name: name.into(),
                        want: format!("≥ {want}× etcd"),
                        measured: format!(
                            "{r:.2}× ({:.0} vs {:.0} ops/s)",
                            c.ops_per_s, e.ops_per_s
                        ),
                        met: Some(r >= want),
                    }
                }
                _ => Target {
                    name: name.into(),
                    want: format!("≥ {want}× etcd"),
                    measured: "not measured".into(),
                    met: None,
                },
            });
        };
        ratio("put", 1.5, "writes, 64 clients", &mut targets);
        if let (Some(c), Some(e)) = (self.find("cairn", "put", 64), self.find("etcd", "put", 64)) {
            targets.push(Target {
                name: "write p99, 64 clients".into(),
                want: "≤ etcd's".into(),
                measured: format!("{:.1} ms vs {:.1} ms", c.p99_ms, e.p99_ms),
                met: Some(c.p99_ms <= e.p99_ms),
            });
        }
        ratio(
            "get_linearizable",
            2.0,
            "linearizable reads, 64 clients",
            &mut targets,
        );
        ratio(
            "get_stale",
            3.0,
            "stale reads vs serializable, 64 clients",
            &mut targets,
        );
        ratio("lock", 2.0, "lock cycles, 64 clients", &mut targets);
        let failover = self
            .runs
            .iter()
            .find(|r| r.system == "cairn" && r.workload == "failover");
        targets.push(Target {
            name: "leader failover, median".into(),
            want: "≤ 1000 ms".into(),
            measured: failover.map_or("not measured".into(), |f| format!("{:.0} ms", f.p50_ms)),
            met: failover.map(|f| f.p50_ms <= 1000.0),
        });
        let saturating = self
            .runs
            .iter()
            .filter(|r| r.system == "cairn" && r.workload == "put")
            .max_by_key(|r| r.concurrency);
        targets.push(Target {
            name: "elections during the saturating write run".into(),
            want: "none".into(),
            measured: saturating.map_or("not measured".into(), |r| {
                format!(
                    "{} in {:.0} s at {} clients",
                    r.elections, r.duration_s, r.concurrency
                )
            }),
            met: saturating.map(|r| r.elections == 0),
        });
        let idle = self.systems.iter().find(|s| s.system == "cairn");
        let max_idle = idle.map(|s| {
            s.idle_rss_mib
                .iter()
                .chain(&s.idle_rss_after_mib)
                .fold(0.0f64, |a, b| a.max(*b))
        });
        targets.push(Target {
            name: "idle RSS per node".into(),
            want: "≤ 64 MiB".into(),
            measured: max_idle.map_or("not measured".into(), |m| format!("{m:.1} MiB (largest)")),
            met: max_idle.map(|m| m <= 64.0),
        });
        self.targets = targets;
    }

    /// The runs and the targets as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("| system | workload | clients | ops/s | p50 ms | p99 ms | p99.9 ms | MB/s | errors | CPU s | peak RSS MiB | elections |\n");
        s.push_str(
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for r in &self.runs {
            let workload = match &r.op {
                Some(op) => format!("{} {op}", r.workload),
                None => r.workload.clone(),
            };
            let peak = r.peak_rss_mib.iter().fold(0.0f64, |a, b| a.max(*b));
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.0} | {} |\n",
                r.system,
                workload,
                r.concurrency,
                if r.workload == "failover" {
                    "—".into()
                } else {
                    format!("{:.0}", r.ops_per_s)
                },
                r.p50_ms,
                r.p99_ms,
                r.p999_ms,
                r.mb_per_s.map_or("".into(), |m| format!("{m:.1}")),
                r.errors,
                r.cpu_s,
                peak,
                r.elections,
            ));
        }
        s.push_str("\n| system | version | idle RSS MiB (start) | idle RSS MiB (after load) |\n| --- | --- | --- | --- |\n");
        for sys in &self.systems {
            let list = |v: &[f64]| {
                v.iter()
                    .map(|m| format!("{m:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                sys.system,
                sys.version,
                list(&sys.idle_rss_mib),
                list(&sys.idle_rss_after_mib)
            ));
        }
        if !self.targets.is_empty() {
            s.push_str("\n| target | want | measured | met |\n| --- | --- | --- | --- |\n");
            for t in &self.targets {
                let met = match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "—",
                };
                s.push_str(&format!(
                    "| {} | {} | {} | {met} |\n",
                    t.name, t.want, t.measured
                ));
            }
        }
        s
    }
}
