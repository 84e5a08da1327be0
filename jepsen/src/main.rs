//! `cairn-jepsen`: run a chaos test, check a recorded history, or remove
//! what an interrupted run left behind.

use std::path::PathBuf;
use std::time::Duration;

use cairn_jepsen::checker::Validity;
use cairn_jepsen::nemesis::Fault;
use cairn_jepsen::run::{self, Live, Options, StoreChoice};
use cairn_jepsen::workload::Kind;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn-jepsen",
    about = "Chaos and partition testing for Cairn clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster, run a workload under faults, check the history.
    /// Exits 0 when valid, 1 when invalid, 2 when unknown or on error.
    Run(RunArgs),
    /// Check a recorded history again.
    Check {
        /// The workload that produced it.
        #[arg(long, value_enum)]
        workload: Kind,
        /// Time budget of the linearizability search, seconds.
        #[arg(long, default_value_t = 60)]
        budget: u64,
        /// The `history.jsonl` file.
        history: PathBuf,
    },
    /// Print a Markdown table of the runs under a results folder.
    Table {
        /// The parent folder of the runs.
        #[arg(default_value = "jepsen-results")]
        results: PathBuf,
    },
    /// Remove every namespace, link and iptables rule of this harness
    /// (prefix `cjep`), and the processes in those namespaces.
    Cleanup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// What the clients do.
    #[arg(long, value_enum)]
    workload: Kind,
    /// Faults to draw from, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "partition")]
    nemesis: Vec<Fault>,
    /// Seconds of workload.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// `?consistency=` of register reads: linearizable, lease or stale.
    #[arg(long, default_value = "linearizable", value_parser = ["linearizable", "lease", "stale"])]
    read_consistency: String,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The `cairn` binary (default: beside this one, else target/debug/cairn).
    #[arg(long, env = "CAIRN_BIN")]
    cairn_bin: Option<PathBuf>,
    /// Parent folder of the results.
    #[arg(long, default_value = "jepsen-results")]
    results: PathBuf,
    /// Where registers live.
    #[arg(long, value_enum, default_value = "auto")]
    store: StoreChoice,
    /// Live register keys at a time.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Operations per key before it is retired for a fresh one.
    #[arg(long, default_value_t = 200)]
    ops_per_key: u64,
    /// Quiet seconds before each fault.
    #[arg(long, default_value_t = 5)]
    quiet: u64,
    /// Seconds each fault is held.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Seconds the healed cluster gets to become ready again.
    #[arg(long, default_value_t = 60)]
    recovery: u64,
    /// Seconds the linearizability search may take in all.
    #[arg(long, default_value_t = 120)]
    check_budget: u64,
    /// Client request timeout, milliseconds.
    #[arg(long, default_value_t = 8000)]
    client_timeout_ms: u64,
    /// Random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Extra `cairn serve` flag for every node (repeatable), e.g. `--node-arg=--heartbeat-ms=50`.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
}

fn default_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("cairn")));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("target/debug/cairn"),
    }
}

fn exit_code(v: Validity) -> i32 {
    match v {
        Validity::Valid => 0,
        Validity::Invalid => 1,
        Validity::Unknown => 2,
    }
}

async fn signalled() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn run_cmd(args: RunArgs) -> i32 {
    let binary = args.cairn_bin.unwrap_or_else(default_binary);
    if !binary.exists() {
        eprintln!(
            "error: no cairn binary at {} (build it with `cargo build -p cairn`, or pass --cairn-bin)",
            binary.display()
        );
        return 2;
    }
    let binary = std::fs::canonicalize(&binary).unwrap_or(binary);
    let seed = args.seed.unwrap_or_else(rand::random);
    let opts = Options {
        workload: args.workload,
        nemesis: args.nemesis,
        time: Duration::from_secs(args.time),
        read_consistency: args.read_consistency,
        nodes: args.nodes,
        concurrency: args.concurrency.max(1),
        binary,
        results: args.results,
        store: args.store,
        keys: args.keys.max(1),
        ops_per_key: args.ops_per_key.max(1),
        quiet: Duration::from_secs(args.quiet),
        hold: Duration::from_secs(args.hold),
        recovery: Duration::from_secs(args.recovery),
        check_budget: Duration::from_secs(args.check_budget),
        client_timeout: Duration::from_millis(args.client_timeout_ms),
        seed,
        node_args: args.node_args,
    };
    println!(
        "cairn-jepsen: {:?} workload, nemesis {:?}, {} s, {} reads, seed {seed}",
        opts.workload, opts.nemesis, args.time, opts.read_consistency
    );
    let live: Live = Default::default();
    let outcome = tokio::select! {
        r = run::run(opts, live.clone()) => Ok(r),
        s = signalled() => Err(s),
    };
    match outcome {
        Err(signal) => {
            for c in live.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                c.teardown();
            }
            eprintln!("interrupted by {signal}: cluster and network removed");
            2
        }
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            2
        }
        Ok(Ok(summary)) => {
            println!(
                "ops {}  ok {}  fail {}  info {}  faults {}  recovered {} ({} ms)",
                summary.ops,
                summary.ok,
                summary.fail,
                summary.info,
                summary.faults.len(),
                summary.recovered,
                summary.recovery_ms
            );
            for a in &summary.verdict.anomalies {
                println!("anomaly {}: {}", a.kind, a.detail);
            }
            for u in &summary.verdict.unknown {
                println!("undecided: {u}");
            }
            println!(
                "verdict: {:?}  (results in {})",
                summary.verdict.validity,
                summary.dir.display()
            );
            exit_code(summary.verdict.validity)
        }
    }
}

/// One row per `summary.json` under `results`, oldest first.
fn table(results: &std::path::Path) -> anyhow::Result<String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("summary.json").exists())
        .collect();
    dirs.sort();
    let mut out = String::from(
        "| workload | nemesis | reads | store | s | ops | ok | fail | info | faults | anomalies | verdict |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for d in dirs {
        let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("summary.json"))?)?;
        let list = |v: &serde_json::Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let anomalies = s["verdict"]["anomalies"].as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s["workload"].as_str().unwrap_or("?"),
            list(&s["nemesis"]),
            s["read_consistency"].as_str().unwrap_or("?"),
            s["store"].as_str().unwrap_or("?"),
            s["time_s"],
            s["ops"],
            s["ok"],
            s["fail"],
            s["info"],
            s["faults"].as_array().map_or(0, Vec::len),
            anomalies,
            s["verdict"]["validity"].as_str().unwrap_or("?"),
        ));
    }
    Ok(out)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Run(args) => run_cmd(args).await,
        Cmd::Check {
            workload,
            budget,
            history,
        } => match cairn_jepsen::history::load(&history) {
            Ok(ops) => {
                let v = run::check(workload, &ops, Duration::from_secs(budget));
                match serde_json::to_string_pretty(&v) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("error: {e}"),
                }
                exit_code(v.validity)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Cmd::Table { results } => match table(&results) {
            Ok(t) => {
                print!("{t}");
                0
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        },
        Cmd::Cleanup => {
            let removed = cairn_jepsen::net::remove_tagged(cairn_jepsen::net::PREFIX);
            for r in &removed {
                println!("removed {r}");
            }
            println!("{} items removed", removed.len());
            0
        }
    };
    std::process::exit(code);
}
