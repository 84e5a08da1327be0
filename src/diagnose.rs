//! `cairn diagnose --endpoints URL,URL,...`: asks every node for its health
//! and cluster view, prints a readable report with a concrete hint for each
//! problem (or JSON with `--json`), and tells whether the cluster is healthy.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// Flags of `cairn diagnose`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// API URLs of the nodes to check, comma-separated.
    #[arg(long, env = "CAIRN_ENDPOINTS", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each node.
    #[arg(long, env = "CAIRN_DIAGNOSE_TIMEOUT_MS", default_value_t = 3_000)]
    pub timeout_ms: u64,
}

/// One check of one node, with a hint when it fails.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What the node saw.
    pub detail: String,
    /// What to do about it (failing checks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What one node reported.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// The URL asked.
    pub endpoint: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its id.
    pub node_id: Option<u64>,
    /// Its version.
    pub version: Option<String>,
    /// `leader`, `follower`, ...
    pub role: Option<String>,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Its term.
    pub term: Option<u64>,
    /// Entries committed but not applied.
    pub lag: Option<u64>,
    /// `healthy`, `degraded` or `critical`.
    pub status: Option<String>,
    /// 0-100.
    pub score: Option<u64>,
    /// Bytes of its data directory.
    pub disk_used_bytes: Option<u64>,
    /// Free bytes on its data directory's file system.
    pub disk_free_bytes: Option<u64>,
    /// Its checks.
    pub checks: Vec<CheckReport>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when every node answered, is healthy, and all agree on one leader.
    pub healthy: bool,
    /// Problems that span nodes, each with a hint.
    pub cluster_problems: Vec<String>,
    /// Each node.
    pub nodes: Vec<NodeReport>,
}

/// A concrete next step for a failing check.
pub fn hint(check: &str) -> &'static str {
    match check {
        "member" => "this node is not in the membership: start it with the cluster's --initial-cluster, or add it with POST /v1/cluster/learners on a member",
        "leader_known" => "no leader: fewer than a quorum of voters can reach each other; start the stopped nodes and check that the raft ports (--raft-addr) are reachable between them",
        "quorum_reachable" => "a majority of voters does not answer: writes will fail; restart the down voters or restore the network between their raft ports",
        "members_reachable" => "a member does not answer on its raft port: restart it (its data directory is reused) or check the firewall between raft ports; the cluster runs on while a quorum remains",
        "replication_lag" => "this node applies slower than the cluster commits: check its disk latency (cairn_raft_log_append_duration_seconds) and CPU; it catches up by itself once the cause is gone",
        "disk_space" => "the data directory's disk is nearly full: free space, move --data-dir to a larger volume, or lower --snapshot-every so the log is compacted sooner",
        "checksum_failures" => "stored content failed its checksum: it is not served and is repaired from a healthy member automatically; if it persists, POST /v1/cluster/recovery and check the disk (dmesg, SMART)",
        "snapshot_age" => "the log has grown far past the last snapshot: POST /v1/cluster/snapshot, and look in the node's log for snapshot errors",
        _ => "see the check's detail",
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    resp.json::<Value>().await.map_err(|e| e.to_string())
}

async fn node_report(http: &reqwest::Client, endpoint: &str) -> NodeReport {
    let base = endpoint.trim_end_matches('/');
    let mut r = NodeReport {
        endpoint: endpoint.to_string(),
        reachable: false,
        error: None,
        node_id: None,
        version: None,
        role: None,
        leader: None,
        term: None,
        lag: None,
        status: None,
        score: None,
        disk_used_bytes: None,
        disk_free_bytes: None,
        checks: Vec::new(),
    };
    let health = match get_json(http, &format!("{base}/health")).await {
        Ok(h) => h,
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    r.reachable = true;
    r.node_id = health["node_id"].as_u64();
    r.version = health["version"].as_str().map(String::from);
    r.role = health["role"].as_str().map(String::from);
    r.leader = health["leader"].as_u64();
    r.term = health["term"].as_u64();
    r.lag = health["lag"].as_u64();
    r.status = health["status"].as_str().map(String::from);
    r.score = health["score"].as_u64();
    r.disk_used_bytes = health["disk"]["data_bytes"].as_u64();
    r.disk_free_bytes = health["disk"]["free_bytes"].as_u64();
    if let Some(checks) = health["checks"].as_array() {
        for c in checks {
            let name = c["name"].as_str().unwrap_or("?").to_string();
            let ok = c["ok"].as_bool().unwrap_or(false);
            r.checks.push(CheckReport {
                hint: (!ok).then(|| hint(&name).to_string()),
                detail: c["detail"].as_str().unwrap_or("").to_string(),
                name,
                ok,
            });
        }
    }
    r
}

/// Asks every endpoint and builds the report.
pub async fn diagnose(args: &DiagnoseArgs) -> Report {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Report {
                healthy: false,
                cluster_problems: vec![format!("cannot build an HTTP client: {e}")],
                nodes: Vec::new(),
            }
        }
    };
    let nodes: Vec<NodeReport> =
        futures::future::join_all(args.endpoints.iter().map(|e| node_report(&http, e))).await;
    let mut problems = Vec::new();
    for n in nodes.iter().filter(|n| !n.reachable) {
        problems.push(format!(
            "{} does not answer ({}): check that the process runs, that --api-addr matches this URL, and the end of its log for a panic or a bind error",
            n.endpoint,
            n.error.as_deref().unwrap_or("no answer")
        ));
    }
    let leaders: BTreeSet<Option<u64>> = nodes
        .iter()
        .filter(|n| n.reachable)
        .map(|n| n.leader)
        .collect();
    if leaders.len() > 1 {
        problems.push(format!(
            "nodes name different leaders ({leaders:?}): an election is under way or the network is partitioned; run again in a few seconds and check connectivity between raft ports"
        ));
    }
    let versions: BTreeSet<&str> = nodes.iter().filter_map(|n| n.version.as_deref()).collect();
    if versions.len() > 1 {
        problems.push(format!(
            "nodes run different versions ({versions:?}): finish the rolling upgrade"
        ));
    }
    let healthy = problems.is_empty()
        && nodes
            .iter()
            .all(|n| n.reachable && n.status.as_deref() == Some("healthy"));
    Report {
        healthy,
        cluster_problems: problems,
        nodes,
    }
}

fn human(bytes: Option<u64>) -> String {
    match bytes {
        None => "?".into(),
        Some(b) if b >= 10 << 30 => format!("{} GiB", b >> 30),
        Some(b) if b >= 10 << 20 => format!("{} MiB", b >> 20),
        Some(b) => format!("{} KiB", b >> 10),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".into(), |v| v.to_string())
}

/// The report as text for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.healthy {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    };
    out.push_str(&format!(
        "cluster: {verdict} ({} node(s) asked)\n",
        report.nodes.len()
    ));
    for p in &report.cluster_problems {
        out.push_str(&format!("  ! {p}\n"));
    }
    for n in &report.nodes {
        out.push('\n');
        if !n.reachable {
            out.push_str(&format!(
                "node ? at {}: UNREACHABLE: {}\n",
                n.endpoint,
                n.error.as_deref().unwrap_or("no answer")
            ));
            continue;
        }
        out.push_str(&format!(
            "node {} at {} (cairn {}): {} {}/100\n",
            opt(&n.node_id),
            n.endpoint,
            opt(&n.version),
            n.status.as_deref().unwrap_or("?").to_uppercase(),
            opt(&n.score),
        ));
        out.push_str(&format!(
            "  role {}, leader {}, term {}, apply lag {}, data {}, free {}\n",
            opt(&n.role),
            opt(&n.leader),
            opt(&n.term),
            opt(&n.lag),
            human(n.disk_used_bytes),
            human(n.disk_free_bytes),
        ));
        for c in &n.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("  [{mark}] {:<18} {}\n", c.name, c.detail));
            if let Some(h) = &c.hint {
                out.push_str(&format!("         hint: {h}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_the_node_reports_has_its_own_hint() {
        for name in [
            "member",
            "leader_known",
            "quorum_reachable",
            "members_reachable",
            "replication_lag",
            "disk_space",
            "checksum_failures",
            "snapshot_age",
        ] {
            assert_ne!(hint(name), hint("unknown"), "{name}");
        }
    }
}
