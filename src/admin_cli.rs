//! `cairn admin`: drive the admin API from the shell, with readable output
//! (or the raw JSON with `--json`).

use std::time::Duration;

use anyhow::Context;
use cairn::client::AdminClient;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// `cairn admin` and its options.
#[derive(Args)]
pub struct AdminArgs {
    /// Any node's API URL (or a load balancer's), e.g. http://127.0.0.1:7070.
    #[arg(long, env = "CAIRN_ENDPOINT", default_value = "http://127.0.0.1:7070")]
    endpoint: String,
    /// The admin bearer token.
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Show the leader, term and every member.
    Status,
    /// Add a node as a learner; waits until it has caught up.
    AddLearner {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its HTTP API address, HOST:PORT.
        #[arg(long)]
        api_addr: String,
        /// Its peer (raft) address, HOST:PORT.
        #[arg(long)]
        raft_addr: String,
        /// Return as soon as the learner is added.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for it to catch up.
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a member (voter or learner, the leader included).
    Remove {
        /// The member's id.
        id: u64,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter to lead (default: the most caught-up one).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Build a snapshot on the node at --endpoint and compact its log.
    Snapshot,
}

fn spinner(msg: String) -> ProgressBar {
    // Drawn only when stderr is a terminal; scripts see the result alone.
    let bar = ProgressBar::new_spinner().with_message(msg);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn opt(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_status(v: &Value) {
    println!(
        "cluster {}  leader {}  term {}  commit {}  (seen from node {}: {}, applied {})",
        opt(&v["cluster_id"]),
        opt(&v["leader"]),
        opt(&v["term"]),
        opt(&v["commit_index"]),
        opt(&v["node_id"]),
        opt(&v["state"]),
        opt(&v["applied_index"]),
    );
    println!(
        "{:>4}  {:<8} {:<22} {:<22} {:<9} {:>8} {:>6}",
        "id", "role", "api_addr", "raft_addr", "reachable", "matched", "lag"
    );
    let leader = v["leader"].as_u64();
    for m in v["members"].as_array().into_iter().flatten() {
        let mark = if m["id"].as_u64() == leader { "*" } else { " " };
        println!(
            "{:>3}{mark}  {:<8} {:<22} {:<22} {:<9} {:>8} {:>6}",
            opt(&m["id"]),
            opt(&m["role"]),
            opt(&m["api_addr"]),
            opt(&m["raft_addr"]),
            if m["reachable"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            },
            opt(&m["matched_index"]),
            opt(&m["lag"]),
        );
    }
}

/// Runs `cairn admin ...`.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.endpoint, args.token.clone());
    let endpoint = &args.endpoint;
    let (answer, summary) = match args.command {
        AdminCmd::Status => {
            let v = client
                .status()
                .await
                .with_context(|| format!("status of {endpoint}"))?;
            (v, None)
        }
        AdminCmd::AddLearner {
            id,
            api_addr,
            raft_addr,
            no_wait,
            timeout_ms,
        } => {
            let wait = (!no_wait).then(|| Duration::from_millis(timeout_ms));
            let bar = spinner(format!(
                "adding node {id} as a learner and waiting for it to catch up"
            ));
            let v = client.add_learner(id, &api_addr, &raft_addr, wait).await;
            bar.finish_and_clear();
            let v = v.with_context(|| format!("adding learner {id}"))?;
            let s = if v["caught_up"].as_bool() == Some(true) {
                format!(
                    "node {id} added as a learner and caught up to index {} in {} ms",
                    opt(&v["matched_index"]),
                    opt(&v["elapsed_ms"])
                )
            } else {
                format!(
                    "node {id} added as a learner (catching up to index {})",
                    opt(&v["target_index"])
                )
            };
            (v, Some(s))
        }
        AdminCmd::Promote { id } => {
            let bar = spinner(format!("promoting node {id} (joint consensus)"));
            let v = client.promote(id).await;
            bar.finish_and_clear();
            let v = v.with_context(|| format!("promoting node {id}"))?;
            (v, Some(format!("node {id} is now a voter")))
        }
        AdminCmd::Remove { id } => {
            let bar = spinner(format!("removing node {id}"));
            let v = client.remove(id).await;
            bar.finish_and_clear();
            let v = v.with_context(|| format!("removing node {id}"))?;
            (v, Some(format!("node {id} removed from the cluster")))
        }
        AdminCmd::TransferLeader { to } => {
            let bar = spinner("handing leadership over".into());
            let v = client.transfer_leader(to).await;
            bar.finish_and_clear();
            let v = v.context("transferring leadership")?;
            let s = format!(
                "node {} now leads (was node {}; took {} ms)",
                opt(&v["leader"]),
                opt(&v["from"]),
                opt(&v["took_ms"])
            );
            (v, Some(s))
        }
        AdminCmd::Snapshot => {
            let bar = spinner("building a snapshot".into());
            let v = client.snapshot().await;
            bar.finish_and_clear();
            let v = v.context("building a snapshot")?;
            let s = format!(
                "node {} built a snapshot at index {}; log purged up to {}",
                opt(&v["node_id"]),
                opt(&v["snapshot_index"]),
                opt(&v["purged_index"])
            );
            (v, Some(s))
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if let Some(s) = summary {
        println!("{s}");
    } else {
        print_status(&answer);
    }
    Ok(())
}
