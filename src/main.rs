//! The `cairn` command: run a node, or administer a cluster.

mod admin_cli;
mod allocator;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cairn::{Node, NodeConfig};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "An embedded, Raft-replicated artifact and coordination store"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (the default: a one-node cluster in ./cairn-data).
    Serve(Box<NodeConfig>),
    /// Administer a running cluster through its admin API.
    Admin(admin_cli::AdminArgs),
    /// Report the health of every node, with hints; exits 1 when unhealthy.
    Diagnose(cairn::diagnose::DiagnoseArgs),
}

/// The log filter without `CAIRN_LOG`: the WAL crates log every flush and
/// chunk rotation at info (over a hundred lines a second under load), so
/// they, like openraft, speak only to warn.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,raft_log=warn,chunked_wal=warn";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    allocator::spawn_collector().context("starting the memory collector")?;
    let node = Node::start(config).await.context("starting the node")?;
    // Opening the store read the log on this thread, which now only waits.
    allocator::collect_this_thread();
    shutdown_signal().await;
    node.shutdown().await.context("shutting down")?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(allocator::BLOCKING_KEEP_ALIVE)
        .on_thread_park(allocator::collect_on_park)
        .build()
        .context("starting the runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        Cmd::Serve(Box::new(NodeConfig::new(
            1,
            "./cairn-data".into(),
            "127.0.0.1:7070".into(),
            "127.0.0.1:7071".into(),
        )))
    });
    match command {
        Cmd::Serve(config) => serve(*config).await,
        Cmd::Admin(args) => admin_cli::run(args).await,
        Cmd::Diagnose(args) => {
            let report = cairn::diagnose::diagnose(&args).await;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", cairn::diagnose::render(&report));
            }
            if !report.healthy {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
